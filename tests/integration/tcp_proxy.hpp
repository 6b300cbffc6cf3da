// A loopback TCP proxy a test can cut: while down it refuses connections and has closed every
// open one, as a stopped or unreachable server would look to the node.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <future>
#include <list>
#include <memory>
#include <thread>

namespace sessiond::test {

class tcp_proxy {
public:
  using tcp = boost::asio::ip::tcp;

  explicit tcp_proxy(std::uint16_t target_port) : target_(target_port) {
    open();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~tcp_proxy() {
    work_.reset();
    run([this] { close_all(); });
    io_.stop();
    thread_.join();
  }

  std::uint16_t port() const { return port_; }

  /// Down: close the listener and every relayed connection. Up: listen again on the same port.
  void set_down(bool down) {
    run([this, down] { down ? close_all() : open(); });
  }

private:
  struct pair {
    tcp::socket a, b;
    std::array<char, 16384> ab{}, ba{};
    explicit pair(boost::asio::io_context& io) : a(io), b(io) {}
  };

  template <class F>
  void run(F f) {
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  void open() {
    acceptor_ = std::make_unique<tcp::acceptor>(io_);
    tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"), port_);
    acceptor_->open(ep.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    acceptor_->bind(ep);
    acceptor_->listen();
    port_ = acceptor_->local_endpoint().port();
    accept();
  }

  void close_all() {
    if (acceptor_)
      acceptor_->close();
    acceptor_.reset();
    for (auto& p : pairs_) {
      boost::system::error_code ec;
      p->a.close(ec);
      p->b.close(ec);
    }
    pairs_.clear();
  }

  void accept() {
    auto p = std::make_shared<pair>(io_);
    acceptor_->async_accept(p->a, [this, p](boost::system::error_code ec) {
      if (ec)
        return;
      boost::system::error_code ec2;
      p->b.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), target_), ec2);
      if (!ec2) {
        pairs_.push_back(p);
        relay(p, p->a, p->b, p->ab);
        relay(p, p->b, p->a, p->ba);
      }
      accept();
    });
  }

  void relay(std::shared_ptr<pair> p, tcp::socket& from, tcp::socket& to,
             std::array<char, 16384>& buf) {
    from.async_read_some(
        boost::asio::buffer(buf),
        [this, p, &from, &to, &buf](boost::system::error_code ec, std::size_t n) {
          if (ec) {
            boost::system::error_code ignore;
            to.close(ignore);
            return;
          }
          boost::asio::async_write(
              to, boost::asio::buffer(buf.data(), n),
              [this, p, &from, &to, &buf](boost::system::error_code ec2, std::size_t) {
                if (!ec2)
                  relay(p, from, to, buf);
              });
        });
  }

  boost::asio::io_context io_;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_ =
      std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
          io_.get_executor());
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::list<std::shared_ptr<pair>> pairs_;
  std::uint16_t target_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

} // namespace sessiond::test
