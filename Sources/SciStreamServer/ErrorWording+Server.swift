import SciStreamAuth
import SciStreamCommandLine
import SciStreamDataPlane

/// The wording of the errors only s2cs meets: the data plane's, and why a token could not be checked.
extension ErrorWording {
    package static func dataPlane(_ error: DataPlaneError) -> String {
        switch error {
        case .plaintextUnsupported(let type):
            return "\(type.name) cannot forward plain TCP: use --type Haproxy or --type Nginx with --data-plane-tls=False"
        case .folder(let path, let reason):
            return "cannot use the session folder \(path) (--config-folder): \(reason)"
        case .folderInUse:
            return "\(error): give each s2cs a --config-folder of its own"
        default:
            return error.description
        }
    }

    /// Why s2cs refuses a request whose token it could not check (the status it sends, and its log).
    package static func tokenVerdict(_ verdict: TokenVerdict, clientID: String) -> String {
        switch verdict {
        case .credentialsRefused(let error):
            return "s2cs cannot check tokens: \(error); check its --client-id and --client-secret (client \(clientID))"
        default:
            return TokenVerdict.text(verdict)
        }
    }
}

extension DataPlaneError: OperatorWordedError {
    public var operatorText: String { ErrorWording.dataPlane(self) }
}
