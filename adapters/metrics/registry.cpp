// Name validation, Family<T> and Registry: the locked paths (register, add, remove, collect).
#include "adapters/metrics/registry.hpp"

#include <algorithm>
#include <stdexcept>

namespace sessiond::metrics {

namespace {

bool is_name_char(char c, bool first, bool colon_allowed) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
    return true;
  if (c == ':')
    return colon_allowed;
  return !first && c >= '0' && c <= '9';
}

bool is_valid_name(std::string_view name, bool colon_allowed) {
  if (name.empty() || name.substr(0, 2) == "__")
    return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!is_name_char(name[i], i == 0, colon_allowed))
      return false;
  }
  return true;
}

[[noreturn]] void invalid(const std::string& what, const std::string& name) {
  throw std::invalid_argument(what + " \"" + name + "\"");
}

/// `le` is the bucket label of a histogram's samples: a user label of that name would clash.
template <typename T>
void check_label_name(const std::string& name) {
  if (!is_valid_label_name(name))
    invalid("invalid label name", name);
  if constexpr (T::metric_type == MetricType::Histogram) {
    if (name == "le")
      invalid("label name reserved in a histogram", name);
  }
}

/// The names a family's samples are written under.
std::vector<std::string> sample_names(MetricType type, const std::string& name) {
  if (type == MetricType::Histogram)
    return {name, name + "_bucket", name + "_sum", name + "_count"};
  return {name};
}

bool samples_clash(MetricType a, const std::string& name_a, MetricType b,
                   const std::string& name_b) {
  auto sa = sample_names(a, name_a);
  auto sb = sample_names(b, name_b);
  return std::any_of(sa.begin(), sa.end(), [&](const std::string& s) {
    return std::find(sb.begin(), sb.end(), s) != sb.end();
  });
}

} // namespace

bool is_valid_metric_name(std::string_view name) {
  return is_valid_name(name, true);
}

bool is_valid_label_name(std::string_view name) {
  return is_valid_name(name, false);
}

// --- Family --------------------------------------------------------------------------------

template <typename T>
Family<T>::Family(const std::string& name, const std::string& help, const Labels& constant_labels)
    : name_(name), help_(help), constant_labels_(constant_labels) {
  if (!is_valid_metric_name(name_))
    invalid("invalid metric name", name_);
  for (const auto& [label, value] : constant_labels_)
    check_label_name<T>(label);
}

template <typename T>
Family<T>::~Family() = default;

template <typename T>
T& Family<T>::Add(const Labels& labels, std::unique_ptr<T> metric) {
  std::lock_guard<std::mutex> lock{mutex_};
  if (auto it = by_labels_.find(labels); it != by_labels_.end())
    return *it->second;
  for (const auto& [label, value] : labels) {
    check_label_name<T>(label);
    if (constant_labels_.count(label) > 0)
      invalid("label name repeats a constant label", label);
  }
  T* added = metric.get();
  metrics_.push_back({labels, std::move(metric)});
  by_labels_.emplace(labels, added);
  return *added;
}

template <typename T>
void Family<T>::Remove(T* metric) {
  std::lock_guard<std::mutex> lock{mutex_};
  auto it = std::find_if(metrics_.begin(), metrics_.end(),
                         [metric](const entry& e) { return e.metric.get() == metric; });
  if (it == metrics_.end())
    return;
  by_labels_.erase(it->labels);
  metrics_.erase(it);
}

template <typename T>
bool Family<T>::Has(const Labels& labels) const {
  std::lock_guard<std::mutex> lock{mutex_};
  return by_labels_.count(labels) > 0;
}

template <typename T>
const std::string& Family<T>::GetName() const {
  return name_;
}

template <typename T>
const Labels Family<T>::GetConstantLabels() const {
  return constant_labels_;
}

template <typename T>
std::vector<MetricFamily> Family<T>::Collect() const {
  MetricFamily family{name_, help_, T::metric_type, {}};
  std::lock_guard<std::mutex> lock{mutex_};
  family.metric.reserve(metrics_.size());
  for (const auto& e : metrics_) {
    auto collected = e.metric->Collect();
    collected.label.reserve(constant_labels_.size() + e.labels.size());
    for (const auto& [name, value] : constant_labels_)
      collected.label.push_back({name, value});
    for (const auto& [name, value] : e.labels)
      collected.label.push_back({name, value});
    family.metric.push_back(std::move(collected));
  }
  return {std::move(family)};
}

// --- Builder -------------------------------------------------------------------------------

namespace detail {

template <typename T>
Builder<T>& Builder<T>::Labels(const std::map<std::string, std::string>& labels) {
  labels_ = labels;
  return *this;
}

template <typename T>
Builder<T>& Builder<T>::Name(const std::string& name) {
  name_ = name;
  return *this;
}

template <typename T>
Builder<T>& Builder<T>::Help(const std::string& help) {
  help_ = help;
  return *this;
}

template <typename T>
Family<T>& Builder<T>::Register(Registry& registry) {
  return registry.Add<T>(name_, help_, labels_);
}

} // namespace detail

detail::Builder<Counter> BuildCounter() {
  return {};
}

detail::Builder<Gauge> BuildGauge() {
  return {};
}

detail::Builder<Histogram> BuildHistogram() {
  return {};
}

// --- Registry ------------------------------------------------------------------------------

Registry::Registry(InsertBehavior insert_behavior) : insert_behavior_(insert_behavior) {}

Registry::~Registry() = default;

template <typename T>
Family<T>& Registry::Add(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard<std::mutex> lock{mutex_};
  for (auto& e : families_) {
    if (e.name == name && e.type == T::metric_type && e.constant_labels == labels &&
        insert_behavior_ == InsertBehavior::Merge)
      return static_cast<Family<T>&>(*e.family);
    if (e.name == name)
      invalid("metric family already registered", name);
    if (samples_clash(e.type, e.name, T::metric_type, name))
      invalid("metric family's sample names clash with family " + e.name + ":", name);
  }
  auto family = std::make_unique<Family<T>>(name, help, labels); // validates, may throw
  auto& added = *family;
  families_.push_back({T::metric_type, std::move(family), name, labels});
  return added;
}

template <typename T>
bool Registry::Remove(const Family<T>& family) {
  std::lock_guard<std::mutex> lock{mutex_};
  auto it = std::find_if(families_.begin(), families_.end(),
                         [&family](const entry& e) { return e.family.get() == &family; });
  if (it == families_.end())
    return false;
  families_.erase(it);
  return true;
}

std::vector<MetricFamily> Registry::Collect() const {
  std::lock_guard<std::mutex> lock{mutex_};
  std::vector<MetricFamily> out;
  out.reserve(families_.size());
  for (const auto& e : families_) {
    for (auto& f : e.family->Collect())
      out.push_back(std::move(f));
  }
  return out;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;
template class detail::Builder<Counter>;
template class detail::Builder<Gauge>;
template class detail::Builder<Histogram>;
template Family<Counter>& Registry::Add<Counter>(const std::string&, const std::string&,
                                                 const Labels&);
template Family<Gauge>& Registry::Add<Gauge>(const std::string&, const std::string&, const Labels&);
template Family<Histogram>& Registry::Add<Histogram>(const std::string&, const std::string&,
                                                     const Labels&);
template bool Registry::Remove<Counter>(const Family<Counter>&);
template bool Registry::Remove<Gauge>(const Family<Gauge>&);
template bool Registry::Remove<Histogram>(const Family<Histogram>&);

} // namespace sessiond::metrics
