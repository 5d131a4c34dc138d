// asyncx: C++ std::thread workers and std::async tasks; every tick a worker throws and catches
// an exception, and the main thread collects an async result. Prints "tick T sum=S caught=C".
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

static std::atomic<long> caught{0};
static std::atomic<bool> stop{false};

static void worker() {
    while (!stop) {
        try {
            throw std::runtime_error("expected");
        } catch (const std::exception &) {
            caught++;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

int main(int argc, char **argv) {
    long ticks = argc > 1 ? std::atol(argv[1]) : -1;
    std::vector<std::thread> ws;
    for (int i = 0; i < 3; i++) ws.emplace_back(worker);
    long sum = 0;
    for (long t = 0; ticks < 0 || t < ticks; t++) {
        auto f = std::async(std::launch::async, [t] { return t * 2; });
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        sum += f.get();
        std::printf("tick %ld sum=%ld caught=%ld\n", t, sum, caught.load());
        std::fflush(stdout);
    }
    stop = true;
    for (auto &w : ws) w.join();
    std::printf("done\n");
    return 0;
}
