#include "service/registry/record_table.h"

#include <algorithm>

namespace registrar {

RecordTable::RecordTable() : index_(0, RefHash{this}, RefEq{this}) {}

RecordTable::~RecordTable() = default;

void RecordTable::Reserve(uint64_t n) {
  if (n == 0) return;
  index_.reserve(index_.size() + n);
}

// ---------------------------------------------------------------------------
// Lookups

RecordTable::Ref RecordTable::Find(Id128 id) const {
  auto it = index_.find(id);
  return it == index_.end() ? kNone : *it;
}

bool RecordTable::HoldsAny(absl::Span<const Id128> ids) const {
  uint64_t above = max_hi_;
  bool increasing = true;
  for (const Id128& id : ids) {
    if (id.hi <= above) {
      increasing = false;
      break;
    }
    above = id.hi;
  }
  if (increasing) return false;
  for (const Id128& id : ids) {
    if (Find(id) != kNone) return true;
  }
  return false;
}

RecordTable::Ref RecordTable::FindCommitted(Id128 id) const {
  const Ref r = Find(id);
  return r == kNone || pending(r) ? kNone : r;
}

RecordTable::Ref RecordTable::FindLiveOwned(Id128 id, Kind kind,
                                            OwnerRef owner) const {
  if (owner == kNone || id.is_zero()) return kNone;
  const Ref r = Find(id);
  if (r == kNone) return kNone;
  const Node& n = node(r);
  if (n.kind != kind || n.owner != owner || n.state != State::kLive ||
      (n.flags & kEnding) != 0) {
    return kNone;
  }
  return r;
}

RecordTable::OwnerRef RecordTable::FindOwner(const Owner& owner) const {
  auto it = owners_by_key_.find(owner);
  return it == owners_by_key_.end() ? kNone : it->second;
}

uint64_t RecordTable::live_count(OwnerRef o) const {
  return o == kNone ? 0 : owners_[o]->live;
}

Id128 RecordTable::lease_of(Ref r) const {
  const Node& n = node(r);
  return n.extra == kNone ? Id128{} : extras_[n.extra].lease;
}

int64_t RecordTable::ended_ms(Ref r) const {
  const Node& n = node(r);
  return n.extra == kNone ? 0 : extras_[n.extra].ended_ms;
}

RecordView RecordTable::View(Ref r) const {
  const Node& n = node(r);
  RecordView v;
  v.id = n.id;
  v.kind = n.kind;
  v.owner = owner(n.owner);
  if (n.parent != kNone) v.parent = node(n.parent).id;
  if (n.connection != kNone) v.connection = node(n.connection).id;
  v.created_at = absl::FromUnixMillis(UnpackId(n.id).unix_ms);
  v.ended_at = absl::InfinitePast();
  v.state = n.state;
  v.revision = n.revision;
  v.labels = EmptyLabels();
  if (n.extra != kNone) {
    const Extra& e = extras_[n.extra];
    v.lease = e.lease;
    if (e.labels) v.labels = e.labels;
    if (n.state != State::kLive) v.ended_at = absl::FromUnixMillis(e.ended_ms);
    if (e.end_reason) v.end_reason = *e.end_reason;
  }
  return v;
}

void RecordTable::CollectCascade(Ref root, std::vector<Ref>* out,
                                 absl::flat_hash_set<Ref>* seen) const {
  const OwnerRef owner = node(root).owner;
  std::vector<Ref> stack{root};
  while (!stack.empty()) {
    const Ref r = stack.back();
    stack.pop_back();
    const Node& n = node(r);
    if (n.state != State::kLive || n.owner != owner) continue;
    if (!seen->insert(r).second) continue;
    out->push_back(r);
    const bool is_connection = n.kind == Kind::kConnection;
    for (Ref c = n.first_child; c != kNone;) {
      const Node& child = node(c);
      // Threads outlive the connection they were opened through.
      if (child.state == State::kLive &&
          !(is_connection && child.kind == Kind::kThread)) {
        stack.push_back(c);
      }
      c = is_connection ? child.next_on_conn : child.next_sibling;
    }
  }
}

// ---------------------------------------------------------------------------
// Storage of nodes, extras and owners

RecordTable::Ref RecordTable::AllocNode() {
  Ref r;
  if (free_nodes_ != kNone) {
    r = free_nodes_;
    free_nodes_ = node(r).next_sibling;
  } else {
    if ((allocated_ & (kChunkSize - 1)) == 0) {
      // Default-initialised (not zeroed): pages are touched only when used.
      chunks_.emplace_back(new Node[kChunkSize]);
    }
    r = allocated_++;
  }
  Node& n = node(r);
  n = Node{};
  n.owner = n.parent = n.connection = kNone;
  n.first_child = n.next_sibling = n.prev_sibling = kNone;
  n.next_on_conn = n.prev_on_conn = n.extra = kNone;
  return r;
}

void RecordTable::FreeNode(Ref r) {
  FreeExtra(r);
  Node& n = node(r);
  n.flags = 0;
  n.state = State::kUnspecified;
  n.next_sibling = free_nodes_;
  free_nodes_ = r;
}

RecordTable::Extra& RecordTable::MutableExtra(Ref r) {
  Node& n = node(r);
  if (n.extra == kNone) {
    if (!free_extras_.empty()) {
      n.extra = free_extras_.back();
      free_extras_.pop_back();
    } else {
      n.extra = static_cast<uint32_t>(extras_.size());
      extras_.emplace_back();
    }
  }
  return extras_[n.extra];
}

void RecordTable::FreeExtra(Ref r) {
  Node& n = node(r);
  if (n.extra == kNone) return;
  extras_[n.extra] = Extra{};
  free_extras_.push_back(n.extra);
  n.extra = kNone;
}

RecordTable::OwnerRef RecordTable::GetOrAddOwner(const Owner& owner) {
  auto [it, inserted] = owners_by_key_.try_emplace(owner, kNone);
  if (!inserted) return it->second;
  OwnerRef o;
  if (!free_owners_.empty()) {
    o = free_owners_.back();
    free_owners_.pop_back();
  } else {
    o = static_cast<OwnerRef>(owners_.size());
    owners_.emplace_back();
  }
  owners_[o] = std::make_unique<OwnerEntry>(this, owner);
  it->second = o;
  return o;
}

void RecordTable::RemoveOwner(OwnerRef o) {
  over_cap_.erase(o);
  owners_by_key_.erase(owners_[o]->key);
  owners_[o].reset();
  free_owners_.push_back(o);
}

// ---------------------------------------------------------------------------
// Links

// A child sits in two lists: its parent's (via `parent`, `next_sibling`,
// `prev_sibling`) and its connection's (via `connection`, `next_on_conn`,
// `prev_on_conn`). One pair of functions serves both through a List.
struct RecordTable::List {
  Ref Node::*up;
  Ref Node::*next;
  Ref Node::*prev;
};
const RecordTable::List RecordTable::kParentList{
    &Node::parent, &Node::next_sibling, &Node::prev_sibling};
const RecordTable::List RecordTable::kConnectionList{
    &Node::connection, &Node::next_on_conn, &Node::prev_on_conn};

void RecordTable::Link(const List& list, Ref child, Ref head) {
  Node& c = node(child);
  Node& h = node(head);
  c.*list.up = head;
  c.*list.prev = kNone;
  c.*list.next = h.first_child;
  if (h.first_child != kNone) node(h.first_child).*list.prev = child;
  h.first_child = child;
}

void RecordTable::Unlink(const List& list, Ref child) {
  Node& c = node(child);
  const Ref head = c.*list.up;
  if (head == kNone) return;
  if (c.*list.prev != kNone) {
    node(c.*list.prev).*list.next = c.*list.next;
  } else {
    node(head).first_child = c.*list.next;
  }
  if (c.*list.next != kNone) node(c.*list.next).*list.prev = c.*list.prev;
  c.*list.up = c.*list.next = c.*list.prev = kNone;
  MaybeFreeGhost(head);
}

void RecordTable::LinkParent(Ref child, Ref parent) {
  Link(kParentList, child, parent);
}
void RecordTable::LinkConnection(Ref child, Ref connection) {
  Link(kConnectionList, child, connection);
}
void RecordTable::UnlinkParent(Ref child) { Unlink(kParentList, child); }
void RecordTable::UnlinkConnection(Ref child) {
  Unlink(kConnectionList, child);
}

void RecordTable::MaybeFreeGhost(Ref r) {
  if (is_ghost(r) && node(r).first_child == kNone) {
    FreeNode(r);
    --ghosts_;
  }
}

RecordTable::Ref RecordTable::MakeGhost(Id128 id, Kind kind) {
  const Ref r = AllocNode();
  Node& n = node(r);
  n.id = id;
  n.kind = kind;
  n.state = State::kReleased;
  n.flags = kGhost;
  ++ghosts_;
  return r;
}

// ---------------------------------------------------------------------------
// Changes

RecordTable::Ref RecordTable::AddNode(const RecordView& v, State state,
                                      OwnerRef o) {
  const Ref r = AllocNode();
  Node& n = node(r);
  n.id = v.id;
  n.kind = v.kind;
  n.state = state;
  n.revision = v.revision;
  n.owner = o;
  if (!v.lease.is_zero() || (v.labels && !v.labels->empty())) {
    Extra& e = MutableExtra(r);
    e.lease = v.lease;
    if (v.labels && !v.labels->empty()) e.labels = v.labels;
  }
  index_.insert(r);
  max_hi_ = std::max(max_hi_, v.id.hi);
  // IDs mostly arrive in increasing order (minted so, loaded so): hinting
  // the end spares the B-tree's descent, whose compares each read a node
  // (a wrong hint costs one compare, then a normal insert).
  owners_[o]->ids.insert(owners_[o]->ids.end(), r);
  if (state == State::kLive) ++owners_[o]->live;
  return r;
}

RecordTable::Ref RecordTable::Insert(const RecordView& v) {
  std::vector<Ref> refs;
  InsertAll(absl::MakeConstSpan(&v, 1), &refs);
  return refs.front();
}

void RecordTable::InsertAll(absl::Span<const RecordView> records,
                            std::vector<Ref>* refs) {
  if (records.empty()) return;
  const OwnerRef o = GetOrAddOwner(records.front().owner);
  Id128 parent_id, connection_id;
  Ref parent = kNone, connection = kNone;
  for (const RecordView& v : records) {
    const Ref r = AddNode(v, State::kLive, o);
    if (refs != nullptr) refs->push_back(r);
    if (!v.parent.is_zero()) {
      if (v.parent != parent_id) {
        parent_id = v.parent;
        parent = Find(v.parent);
      }
      if (parent != kNone) LinkParent(r, parent);
    }
    if (!v.connection.is_zero()) {
      if (v.connection != connection_id) {
        connection_id = v.connection;
        connection = Find(v.connection);
      }
      if (connection != kNone) LinkConnection(r, connection);
    }
  }
}

RecordTable::Ref RecordTable::Restore(RecordView&& v) {
  const Ref r = AddNode(v, v.state, GetOrAddOwner(v.owner));
  if (v.state != State::kLive) {
    Extra& e = MutableExtra(r);
    e.ended_ms = absl::ToUnixMillis(v.ended_at);
    if (!v.end_reason.empty()) {
      // Records ended together share one reason; so do neighbours here.
      if (!tombstones_.empty()) {
        const Node& prev = node(tombstones_.back().second);
        if (prev.extra != kNone && extras_[prev.extra].end_reason &&
            *extras_[prev.extra].end_reason == v.end_reason) {
          e.end_reason = extras_[prev.extra].end_reason;
        }
      }
      if (!e.end_reason) {
        e.end_reason = std::make_shared<const std::string>(v.end_reason);
      }
    }
    AddTombstone(r, node(r).owner, e.ended_ms);
  }
  // Parents are usually loaded first (lower IDs), and usually are the
  // owner's latest of their kind; the rest wait for FinishRestore.
  const OwnerRef o = node(r).owner;
  if (o >= recent_.size()) recent_.resize(o + 1);
  Recent& recent = recent_[o];
  auto link = [&](Id128 target, bool is_connection) {
    if (target.is_zero()) return;
    const int slot = RecentSlot(LinkKind(r, is_connection));
    if (slot >= 0 && recent.ref[slot] != kNone && recent.id[slot] == target) {
      if (is_connection) {
        LinkConnection(r, recent.ref[slot]);
      } else {
        LinkParent(r, recent.ref[slot]);
      }
    } else if (!TryLink(r, target, is_connection)) {
      pending_links_.push_back({r, target, is_connection});
    }
  };
  link(v.parent, false);
  link(v.connection, true);
  if (const int slot = RecentSlot(v.kind); slot >= 0) {
    recent.id[slot] = v.id;
    recent.ref[slot] = r;
  }
  return r;
}

int RecordTable::RecentSlot(Kind kind) {
  switch (kind) {
    case Kind::kThread:
      return 0;
    case Kind::kRun:
      return 1;
    case Kind::kConnection:
      return 2;
    default:
      return -1;
  }
}

Kind RecordTable::LinkKind(Ref child, bool is_connection) const {
  return is_connection ? Kind::kConnection : ParentKindOf(kind(child));
}

bool RecordTable::TryLink(Ref child, Id128 target_id, bool is_connection) {
  const Ref target = Find(target_id);
  if (target == kNone) return false;
  // A reference to a record of the wrong kind is not a link (never written
  // by this server); dropped rather than followed.
  if (kind(target) != LinkKind(child, is_connection)) return true;
  if (is_connection) {
    LinkConnection(child, target);
  } else {
    LinkParent(child, target);
  }
  return true;
}

void RecordTable::FinishRestore() {
  // Records the store no longer holds (dropped tombstones) become ghosts.
  absl::flat_hash_map<Id128, Ref> ghosts;
  for (const PendingLink& link : pending_links_) {
    if (TryLink(link.child, link.target, link.is_connection)) continue;
    const Kind want = LinkKind(link.child, link.is_connection);
    if (want == Kind::kUnspecified) continue;
    auto [it, inserted] = ghosts.try_emplace(link.target, kNone);
    if (inserted) it->second = MakeGhost(link.target, want);
    if (link.is_connection) {
      LinkConnection(link.child, it->second);
    } else {
      LinkParent(link.child, it->second);
    }
  }
  pending_links_.clear();
  pending_links_.shrink_to_fit();
  recent_.clear();
  recent_.shrink_to_fit();
  // Loaded in ID order; retention wants end order.
  std::stable_sort(
      tombstones_.begin(), tombstones_.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
}

void RecordTable::End(Ref r, State state, int64_t ended_ms,
                      const std::shared_ptr<const std::string>& reason,
                      uint64_t revision) {
  Node& n = node(r);
  n.state = state;
  n.revision = revision;
  n.flags &= ~kEnding;
  Extra& e = MutableExtra(r);
  e.ended_ms = ended_ms;
  e.end_reason = reason;
  --owners_[n.owner]->live;
  AddTombstone(r, n.owner, ended_ms);
}

void RecordTable::AddTombstone(Ref r, OwnerRef o, int64_t ended_ms) {
  tombstones_.emplace_back(ended_ms, r);
  ++tombstone_count_;
  if (++owners_[o]->ended > tombstone_cap_ && tombstone_cap_ != 0) {
    over_cap_.insert(o);
  }
}

bool RecordTable::Current(const std::pair<int64_t, Ref>& entry) const {
  const Ref r = entry.second;
  if (r >= allocated_) return false;
  const Node& n = node(r);
  return n.owner != kNone && (n.flags & kGhost) == 0 &&
         n.state != State::kLive && ended_ms(r) == entry.first;
}

void RecordTable::TrimTombstoneQueue() {
  while (!tombstones_.empty() && !Current(tombstones_.front())) {
    tombstones_.pop_front();
  }
  if (tombstones_.size() > 2 * tombstone_count_ + 1024) {
    std::deque<std::pair<int64_t, Ref>> kept;
    for (const auto& entry : tombstones_) {
      if (Current(entry)) kept.push_back(entry);
    }
    tombstones_.swap(kept);
  }
}

uint64_t RecordTable::tombstone_count(OwnerRef o) const {
  return o == kNone ? 0 : owners_[o]->ended;
}

std::vector<Id128> RecordTable::DueTombstones(int64_t cutoff_ms) const {
  std::vector<Id128> due;
  for (const auto& entry : tombstones_) {
    if (entry.first > cutoff_ms) break;
    if (Current(entry)) due.push_back(id(entry.second));
  }
  return due;
}

std::vector<Id128> RecordTable::ExcessTombstones(int64_t cutoff_ms) const {
  std::vector<Id128> out;
  for (const OwnerRef o : over_cap_) {
    const OwnerEntry& owner = *owners_[o];
    uint64_t excess = owner.ended - tombstone_cap_;
    for (auto it = owner.ids.begin(); excess > 0 && it != owner.ids.end();
         ++it) {
      const Ref r = *it;
      if (node(r).state == State::kLive) continue;
      --excess;
      if (ended_ms(r) > cutoff_ms) out.push_back(id(r));
    }
  }
  return out;
}

uint64_t RecordTable::DropTombstones(absl::Span<const Id128> ids) {
  uint64_t dropped = 0;
  for (const Id128& i : ids) {
    const Ref r = Find(i);
    if (r == kNone || node(r).state == State::kLive) continue;
    Drop(r);
    ++dropped;
  }
  TrimTombstoneQueue();
  return dropped;
}

void RecordTable::Remove(Ref r) {
  if (node(r).state == State::kLive) --owners_[node(r).owner]->live;
  Drop(r);
}

void RecordTable::Drop(Ref r) {
  // Hashing and ordering read the node's ID: take it out of both first.
  index_.erase(r);
  const OwnerRef o = node(r).owner;
  OwnerEntry& owner = *owners_[o];
  owner.ids.erase(r);
  if (node(r).state != State::kLive) {
    --tombstone_count_;
    if (--owner.ended <= tombstone_cap_) over_cap_.erase(o);
  }
  if (owner.ids.empty()) RemoveOwner(o);
  UnlinkParent(r);
  UnlinkConnection(r);
  Node& n = node(r);
  n.owner = kNone;
  if (n.first_child == kNone) {
    FreeNode(r);
  } else {
    FreeExtra(r);
    n.flags |= kGhost;
    ++ghosts_;
  }
}

// ---------------------------------------------------------------------------

RecordTable::Memory RecordTable::MemoryUsage() const {
  Memory m;
  m.nodes = chunks_.size() * kChunkSize * sizeof(Node);
  // Swiss table: a Ref and a control byte a slot.
  m.id_index = index_.bucket_count() * (sizeof(Ref) + 1);
  m.extras = extras_.capacity() * sizeof(Extra) +
             free_extras_.capacity() * sizeof(uint32_t);
  m.owners =
      owners_.capacity() * sizeof(void*) +
      owners_by_key_.bucket_count() * (sizeof(Owner) + sizeof(OwnerRef) + 1);
  for (const auto& entry : owners_) {
    if (entry == nullptr) continue;
    m.owners += sizeof(OwnerEntry);
    // B-tree nodes of 256 bytes hold about 60 Refs when appended in order.
    m.owner_ids += (entry->ids.size() + 59) / 60 * 256;
  }
  m.tombstones = tombstones_.size() * sizeof(tombstones_.front());
  m.ghosts = ghosts_;
  return m;
}

}  // namespace registrar
