import SciStreamClient
import Foundation

exit(await UserClient.main(Array(CommandLine.arguments.dropFirst())))
