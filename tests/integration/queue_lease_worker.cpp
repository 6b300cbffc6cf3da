// A stand-in for an external queue worker, run as a separate process by the durability tests:
// leases one job from sessiond, prints "<id> <lease_token>" on stdout, then holds it without
// answering until it is killed (the test SIGKILLs it mid-job).
//   queue_lease_worker PORT QUEUE LEASE_MS
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <iostream>
#include <string>

namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: queue_lease_worker PORT QUEUE LEASE_MS\n";
    return 2;
  }
  boost::asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                          static_cast<unsigned short>(std::stoi(argv[1]))));
  nlohmann::json body{{"max", 1}, {"wait_ms", 10000}, {"lease_ms", std::stoi(argv[3])}};
  bhttp::request<bhttp::string_body> req{bhttp::verb::post,
                                         std::string("/v1/queues/") + argv[2] + "/lease", 11};
  req.set(bhttp::field::host, "127.0.0.1");
  req.set(bhttp::field::content_type, "application/json");
  req.body() = body.dump();
  req.prepare_payload();
  bhttp::write(s, req);
  boost::beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res);
  auto jobs = nlohmann::json::parse(res.body(), nullptr, false);
  if (jobs.is_discarded() || jobs["jobs"].empty()) {
    std::cout << "none" << std::endl;
    return 1;
  }
  std::cout << jobs["jobs"][0]["id"].get<std::string>() << ' '
            << jobs["jobs"][0]["lease_token"].get<std::string>() << std::endl;
  for (;;)
    pause(); // "working" on it until killed
}
