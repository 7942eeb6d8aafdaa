// An HTTP/1.1 server of the test's own on 127.0.0.1 for the curl transport's tests: it keeps connections alive,
// answers every request with the same intent prediction after a delay chosen per request (or, for the first few
// requests, 503 `overloaded` with a Retry-After header, as a worker past its bound does), and counts the
// connections it accepted and the requests it read, noting when it read each.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

class LoopbackServer {
public:
    // How long to hold the answer to the n-th request (0-based, in the order the requests were read).
    using Delay = std::function<std::chrono::milliseconds(std::size_t request)>;

    // The first `count` requests are answered 503 `overloaded` with `Retry-After: <retry_after>` at once.
    struct Refusals {
        std::size_t count = 0;
        std::string retry_after;
    };

    explicit LoopbackServer(Delay delay = no_delay()) : LoopbackServer(std::move(delay), Refusals{}) {}
    explicit LoopbackServer(Refusals refusals) : LoopbackServer(no_delay(), std::move(refusals)) {}

    LoopbackServer(Delay delay, Refusals refusals) : delay_(std::move(delay)), refusals_(std::move(refusals)) {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (listener_ < 0) throw std::runtime_error("socket() failed");
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = 0;
        socklen_t length = sizeof(address);
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
            ::listen(listener_, 64) != 0 ||
            ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            ::close(listener_);
            throw std::runtime_error("cannot listen on 127.0.0.1");
        }
        port_ = ntohs(address.sin_port);
        acceptor_ = std::thread([this] { accept_connections(); });
    }

    ~LoopbackServer() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        changed_.notify_all();
        acceptor_.join();
        for (auto& connection : connections_) connection.join();
        ::close(listener_);
    }

    LoopbackServer(const LoopbackServer&) = delete;
    LoopbackServer& operator=(const LoopbackServer&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    std::size_t connections_accepted() {
        std::lock_guard<std::mutex> lock(mutex_);
        return accepted_;
    }

    std::size_t requests_read() {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_;
    }

    // When each request was read, in order.
    std::vector<std::chrono::steady_clock::time_point> read_at() {
        std::lock_guard<std::mutex> lock(mutex_);
        return read_at_;
    }

    // True once `count` requests have been read, false if that did not happen within `timeout`.
    bool wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return requests_ >= count; });
    }

    static constexpr const char* kAnswer =
        R"({"intent":"local","confidence":0.9,"verticals":[],"variant":"classic","model_version":"v1.0.0",)"
        R"("fallback":false,"cached":false})";
    static constexpr const char* kOverloaded = R"({"error":"the worker is at its bound","code":"overloaded"})";

private:
    static Delay no_delay() {
        return [](std::size_t) { return std::chrono::milliseconds(0); };
    }

    bool stopping() {
        std::lock_guard<std::mutex> lock(mutex_);
        return stopping_;
    }

    // Waits up to 50 ms for `fd` to be readable, so that the loops see `stopping_` soon.
    static bool readable(int fd) {
        pollfd polled{fd, POLLIN, 0};
        return ::poll(&polled, 1, 50) > 0;
    }

    void accept_connections() {
        while (!stopping()) {
            if (!readable(listener_)) continue;
            const int fd = ::accept(listener_, nullptr, nullptr);
            if (fd < 0) continue;
            std::lock_guard<std::mutex> lock(mutex_);
            ++accepted_;
            connections_.emplace_back([this, fd] { serve(fd); });
        }
    }

    // One connection: requests read and answered in turn until the client closes it or the server stops.
    void serve(int fd) {
        std::string received;
        char chunk[4096];
        while (true) {
            const std::size_t head_end = received.find("\r\n\r\n");
            if (head_end != std::string::npos && received.size() >= head_end + 4 + content_length(received)) {
                received.erase(0, head_end + 4 + content_length(received));
                if (!answer(fd)) break;
                continue;
            }
            if (stopping()) break;
            if (!readable(fd)) continue;
            const ssize_t count = ::recv(fd, chunk, sizeof(chunk), 0);
            if (count <= 0) break;  // closed by the client
            received.append(chunk, static_cast<std::size_t>(count));
        }
        ::close(fd);
    }

    bool answer(int fd) {
        std::unique_lock<std::mutex> lock(mutex_);
        const std::size_t index = requests_++;
        read_at_.push_back(std::chrono::steady_clock::now());
        changed_.notify_all();
        const bool refused = index < refusals_.count;
        const std::chrono::milliseconds delay = refused ? std::chrono::milliseconds(0) : delay_(index);
        if (changed_.wait_for(lock, delay, [this] { return stopping_; })) return false;
        lock.unlock();
        const std::string body = refused ? kOverloaded : kAnswer;
        const std::string status = refused ? "503 Service Unavailable" : "200 OK";
        const std::string retry_after = refused ? "Retry-After: " + refusals_.retry_after + "\r\n" : "";
        const std::string response = "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\n" + retry_after +
                                     "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        // MSG_NOSIGNAL: a client that gave up and closed the connection must not kill the test with SIGPIPE.
        return ::send(fd, response.data(), response.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(response.size());
    }

    static std::size_t content_length(const std::string& request) {
        std::string lower(request.substr(0, request.find("\r\n\r\n")));
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
        const std::size_t at = lower.find("content-length:");
        return at == std::string::npos ? 0 : std::stoul(lower.substr(at + 15));
    }

    Delay delay_;
    Refusals refusals_;
    int listener_ = -1;
    unsigned short port_ = 0;
    std::mutex mutex_;
    std::condition_variable changed_;
    bool stopping_ = false;
    std::size_t accepted_ = 0;
    std::size_t requests_ = 0;
    std::vector<std::chrono::steady_clock::time_point> read_at_;
    std::thread acceptor_;
    std::vector<std::thread> connections_;
};
