// Threads that must call at the same moment wait at a starting gate until all of them have arrived (std::latch
// is C++20): a test of coalescing then does not depend on how fast threads start.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>

class StartingGate {
public:
    explicit StartingGate(std::size_t threads) : waiting_(threads) {}

    void arrive_and_wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        if (--waiting_ == 0) {
            opened_.notify_all();
            return;
        }
        opened_.wait(lock, [this] { return waiting_ == 0; });
    }

private:
    std::mutex mutex_;
    std::condition_variable opened_;
    std::size_t waiting_;
};
