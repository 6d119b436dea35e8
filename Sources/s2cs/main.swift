import SciStreamServer
import Foundation

exit(await ControlDaemon.main(Array(CommandLine.arguments.dropFirst())))
