// cxx: iostreams, exceptions, std::string and a std::map carried across a restart.
#include <chrono>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

int main(int argc, char **argv) {
    int n = argc > 1 ? std::stoi(argv[1]) : 150;
    std::map<std::string, long> seen;
    long acc = 1;
    for (int i = 0; i < n; i++) {
        try {
            acc = (acc * 7919 + i) % 1000003;
            if (i % 3 == 0) throw std::runtime_error("e" + std::to_string(acc));
            seen["k" + std::to_string(i % 17)] += acc;
            std::cout << "line " << i << " " << acc << " " << seen.size() << std::endl;
        } catch (const std::exception &e) {
            std::cout << "caught " << i << " " << e.what() << std::endl;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    long sum = 0;
    for (auto &kv : seen) sum += kv.second;
    std::cout << "done " << sum << std::endl;
    return 0;
}
