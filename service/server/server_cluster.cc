// RegistrarServer's --store=etcd parts: starting this process's replica
// of the cluster (service/cluster/replica.h) and following its health on
// the ticker (health status, log, metrics).

#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "service/etcd/etcd_backend.h"
#include "service/server/server.h"
#include "service/server/transport.h"
#include "spdlog/spdlog.h"

namespace registrar {

absl::Status RegistrarServer::StartReplica() {
  cluster::ReplicaOptions o;
  o.store = config_.etcd.store;
  o.registry = config_.registry;
  o.max_lag = config_.follower_max_lag;
  o.forward_timeout = config_.limits.call_timeout;
  if (config_.transport.tls()) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        MakeForwardCredentials(config_.transport, config_.cluster_tls_ca);
    if (!credentials.ok()) return StartupError("", credentials.status());
    o.forward_credentials = *std::move(credentials);
    o.forward_server_name = config_.cluster_tls_server_name;
  }
  // A claim lost (paused or cut off from etcd past its TTL) is claimed
  // again in-process rather than waiting for a restart.
  o.reclaim = [this]() {
    return etcd::ClaimNodeId(etcd_conn_, EtcdBackendFor(config_), clock_);
  };
  absl::StatusOr<std::unique_ptr<cluster::Replica>> replica =
      cluster::Replica::Start(etcd_conn_, node_claim_, std::move(o), clock_,
                              *ids_, registry_metrics_.get());
  if (!replica.ok()) {
    return StartupError("--store=etcd: ", replica.status());
  }
  replica_ = *std::move(replica);
  cluster_is_leader_ = &prometheus::BuildGauge()
                            .Name("registrar_cluster_is_leader")
                            .Help(
                                "1 while this replica is the cluster's "
                                "elected writer, 0 while it is a follower "
                                "(--store=etcd).")
                            .Register(metrics_->registry())
                            .Add({});
  cluster_applied_ = &prometheus::BuildGauge()
                          .Name("registrar_cluster_applied_revision")
                          .Help(
                              "The Registrar revision this replica's "
                              "registry holds (--store=etcd).")
                          .Register(metrics_->registry())
                          .Add({});
  cluster_writer_ = &prometheus::BuildGauge()
                         .Name("registrar_cluster_writer")
                         .Help(
                             "1, labelled with the address of the cluster's "
                             "writer as this replica sees it (no series "
                             "while none is elected; --store=etcd).")
                         .Register(metrics_->registry());
  auto& became_writer =
      prometheus::BuildCounter()
          .Name("registrar_cluster_became_writer_total")
          .Help(
              "Times this replica became the cluster's writer, by how: "
              "took_over (its follower registry, caught up, no reload) or "
              "loaded (a fresh load from etcd; --store=etcd).")
          .Register(metrics_->registry());
  cluster_took_over_ = &became_writer.Add({{"how", "took_over"}});
  cluster_loaded_ = &became_writer.Add({{"how", "loaded"}});
  cluster_dead_writers_ =
      &prometheus::BuildCounter()
           .Name("registrar_cluster_dead_writers_revoked_total")
           .Help(
               "Writers this replica found refusing connections (process "
               "gone) and replaced at once by revoking their etcd lease, "
               "instead of waiting for its TTL (--store=etcd).")
           .Register(metrics_->registry())
           .Add({});
  cluster_reclaims_ =
      &prometheus::BuildCounter()
           .Name("registrar_cluster_node_id_reclaims_total")
           .Help(
               "Node ids this replica claimed anew after losing its claim "
               "(paused or cut off from etcd past --etcd_node_ttl; "
               "--store=etcd).")
           .Register(metrics_->registry())
           .Add({});
  return absl::OkStatus();
}

void RegistrarServer::CheckReplicaHealth() {
  const cluster::ReplicaHealth h = replica_->CheckHealth();
  cluster_is_leader_->Set(h.leader ? 1 : 0);
  cluster_applied_->Set(static_cast<double>(h.applied));
  cluster_took_over_->Increment(static_cast<double>(h.took_over) -
                                cluster_took_over_->Value());
  cluster_loaded_->Increment(static_cast<double>(h.loaded_as_writer) -
                             cluster_loaded_->Value());
  cluster_dead_writers_->Increment(static_cast<double>(h.dead_writers_revoked) -
                                   cluster_dead_writers_->Value());
  cluster_reclaims_->Increment(static_cast<double>(h.reclaimed) -
                               cluster_reclaims_->Value());
  if (h.leader_address != cluster_writer_address_) {
    if (cluster_writer_series_ != nullptr) {
      cluster_writer_->Remove(cluster_writer_series_);
      cluster_writer_series_ = nullptr;
    }
    if (!h.leader_address.empty()) {
      cluster_writer_series_ =
          &cluster_writer_->Add({{"address", h.leader_address}});
      cluster_writer_series_->Set(1);
    }
    cluster_writer_address_ = h.leader_address;
  }
  store_writable_->Set(h.serving ? 1 : 0);
  const std::string state = absl::StrCat(
      h.serving ? "SERVING" : "NOT_SERVING", "; role ",
      h.leader ? "writer" : "follower", " (node id ", h.node_id, "), writer ",
      h.leader_address.empty() ? "unknown" : h.leader_address,
      h.serving ? "" : "; ", h.cause);
  if (state != replica_state_) {
    if (h.serving) {
      spdlog::info("cluster health: {}", state);
    } else {
      spdlog::error("cluster health: {}", state);
    }
    replica_state_ = state;
  }
  if (h.serving != store_healthy_) {
    store_healthy_ = h.serving;
    SetServing(v1::Registrar::service_full_name(), store_healthy_);
  }
}

}  // namespace registrar
