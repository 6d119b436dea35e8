import Foundation
import SciStreamControl

exit(await Bench.main(Array(CommandLine.arguments.dropFirst())))
