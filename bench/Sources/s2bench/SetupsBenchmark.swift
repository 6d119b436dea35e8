import Synchronization

/// `s2bench setups`: N whole sessions (request, hello, update, release), C at a time.
struct SetupsBenchmark {
    let steps: SessionSteps
    let sessions: Int
    let concurrency: Int
    let warmup: Int
    let separateRelease: Bool

    struct Result {
        var elapsed: Duration
        var latenciesMS: [Double]
        var errors: [String]
        var errorCount: Int
    }

    /// Hands out session numbers to the workers.
    private final class Counter: Sendable {
        private let next = Atomic<Int>(0)
        let limit: Int
        init(limit: Int) { self.limit = limit }
        func take() -> Int? {
            let value = next.wrappingAdd(1, ordering: .relaxed).oldValue
            return value < limit ? value : nil
        }
    }

    private struct WorkerResult: Sendable {
        var latenciesMS: [Double] = []
        var errors: [String] = []
        var errorCount = 0
    }

    func run() async -> Result {
        if warmup > 0 {
            _ = await drive(sessions: warmup)
        }
        let clock = ContinuousClock()
        let start = clock.now
        var result = await drive(sessions: sessions)
        result.elapsed = clock.now - start
        return result
    }

    private func drive(sessions: Int) async -> Result {
        let counter = Counter(limit: sessions)
        let steps = self.steps
        let separateRelease = self.separateRelease
        let workers = max(1, min(concurrency, sessions))
        let clock = ContinuousClock()
        let start = clock.now
        var total = WorkerResult()
        await withTaskGroup(of: WorkerResult.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    var mine = WorkerResult()
                    while counter.take() != nil {
                        let began = clock.now
                        do {
                            try await steps.complete(separateRelease: separateRelease)
                            mine.latenciesMS.append((clock.now - began).milliseconds)
                        } catch {
                            mine.errorCount += 1
                            if mine.errors.count < 5 { mine.errors.append("\(error)") }
                        }
                    }
                    return mine
                }
            }
            for await worker in group {
                total.latenciesMS += worker.latenciesMS
                total.errorCount += worker.errorCount
                total.errors += worker.errors
            }
        }
        return Result(elapsed: clock.now - start, latenciesMS: total.latenciesMS,
                      errors: Array(total.errors.prefix(10)), errorCount: total.errorCount)
    }
}
