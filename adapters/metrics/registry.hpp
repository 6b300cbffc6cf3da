// The metrics registry: families of labelled metrics, registered through builders
// (BuildCounter() … Register(registry)) and collected in registration order for /metrics.
#pragma once

#include "adapters/metrics/metric.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Public names mirror prometheus-cpp 1.x (Registry, Family<T>, BuildCounter, Add, Remove, …)
// and keep its spelling, so prometheus-cpp can be swapped in (docs/metrics.md). Our own
// helpers are snake_case.
namespace sessiond::metrics {

/// Label name → value. A std::map as in prometheus-cpp: a label set is the same whatever order
/// it was written in, and labels are exposed sorted by name (constant labels first).
using Labels = std::map<std::string, std::string>;

/// [a-zA-Z_:][a-zA-Z0-9_:]*, not starting with `__` (reserved for Prometheus itself).
bool is_valid_metric_name(std::string_view name);
/// [a-zA-Z_][a-zA-Z0-9_]*, not starting with `__`.
bool is_valid_label_name(std::string_view name);

/// Something a registry can collect.
class Collectable {
public:
  virtual ~Collectable() = default;
  virtual std::vector<MetricFamily> Collect() const = 0;
};

/// Metrics of one name and type, one per label set. Add/Remove/Collect take the family's
/// mutex; updating a metric Add returned takes none (see metric.hpp).
template <typename T>
class Family : public Collectable {
public:
  /// Throws std::invalid_argument on an invalid metric name or constant label name.
  Family(const std::string& name, const std::string& help, const Labels& constant_labels);
  ~Family() override;
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  /// The metric for `labels`, created from `args` (Histogram: its BucketBoundaries) the first
  /// time; later calls with the same label set return that same object and ignore `args`.
  /// The reference stays valid until Remove() of it or the family's removal, whatever else
  /// is added or removed meanwhile. Throws std::invalid_argument on an invalid label name, a
  /// name that repeats a constant label, or `le` on a histogram.
  template <typename... Args>
  T& Add(const Labels& labels, Args&&... args) {
    return Add(labels, std::make_unique<T>(std::forward<Args>(args)...));
  }
  /// Forgets `metric` (nothing happens when it is not one of ours). Its reference dangles
  /// from then on: the caller makes sure no thread still updates it.
  void Remove(T* metric);
  bool Has(const Labels& labels) const;
  const std::string& GetName() const;
  const Labels GetConstantLabels() const;
  /// One MetricFamily with the metrics in Add order; an empty family still yields it (so
  /// /metrics shows its HELP and TYPE), unlike prometheus-cpp which then yields none.
  std::vector<MetricFamily> Collect() const override;

private:
  T& Add(const Labels& labels, std::unique_ptr<T> metric);

  struct entry {
    Labels labels;
    std::unique_ptr<T> metric;
  };
  const std::string name_;
  const std::string help_;
  const Labels constant_labels_;
  mutable std::mutex mutex_;
  std::vector<entry> metrics_;     ///< Add order (exposition order)
  std::map<Labels, T*> by_labels_; ///< same metrics, for Add's lookup
};

class Registry;

namespace detail {

/// Collects name, help and constant labels, then registers the family. (The argument type of
/// Labels() is spelled out because the member function hides the `Labels` alias.)
template <typename T>
class Builder {
public:
  Builder& Labels(const std::map<std::string, std::string>& labels);
  Builder& Name(const std::string& name);
  Builder& Help(const std::string& help);
  /// Registry::Add; throws std::invalid_argument on invalid names or a conflicting family.
  Family<T>& Register(Registry& registry);

private:
  std::map<std::string, std::string> labels_;
  std::string name_;
  std::string help_;
};

} // namespace detail

/// Owns families; collects them in registration order. Register and Remove take its mutex
/// (and Collect takes it, then each family's: always in that order).
class Registry : public Collectable {
public:
  /// Merge: registering a family again with the same name, type and constant labels returns
  /// the existing one. Throw: that throws std::invalid_argument too.
  enum class InsertBehavior { Merge, Throw };

  explicit Registry(InsertBehavior insert_behavior = InsertBehavior::Merge);
  ~Registry() override;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  std::vector<MetricFamily> Collect() const override;

  /// Destroys `family` if registered here (true); every reference into it dangles from then on.
  template <typename T>
  bool Remove(const Family<T>& family);

private:
  template <typename T>
  friend class detail::Builder;

  /// Throws std::invalid_argument when the name is taken by a family of another type or with
  /// other constant labels, or when its sample names (a histogram's `_bucket`, `_sum`,
  /// `_count`) clash with another family's, which would corrupt the exposition.
  template <typename T>
  Family<T>& Add(const std::string& name, const std::string& help, const Labels& labels);

  struct entry {
    MetricType type;
    std::unique_ptr<Collectable> family;
    std::string name;
    Labels constant_labels;
  };
  const InsertBehavior insert_behavior_;
  mutable std::mutex mutex_;
  std::vector<entry> families_; ///< registration order
};

detail::Builder<Counter> BuildCounter();
detail::Builder<Gauge> BuildGauge();
detail::Builder<Histogram> BuildHistogram();

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;
extern template class detail::Builder<Counter>;
extern template class detail::Builder<Gauge>;
extern template class detail::Builder<Histogram>;

} // namespace sessiond::metrics
