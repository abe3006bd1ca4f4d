#ifndef REGISTRAR_SERVICE_REGISTRY_RECORD_TABLE_H_
#define REGISTRAR_SERVICE_REGISTRY_RECORD_TABLE_H_

// One shard's records, packed for memory: a live record costs a 64-byte
// node plus about 13 bytes of index, where a hash map of full records with
// vectors of children cost over 300 (see README, "Performance").
//
// Layout:
//  - Nodes live in fixed-size chunks and are named by a 32-bit Ref. Parent,
//    connection and child links are Refs, not IDs.
//  - The ID index is a hash set of Refs that hashes the node's ID, so it
//    holds 4 bytes a record instead of a 16-byte key and a value.
//  - Children form intrusive doubly linked lists: a connection's list holds
//    every record opened through it; any other record's list holds the
//    records whose parent it is. Unlinking is O(1).
//  - Each owner keeps a B-tree of its Refs ordered by ID (ListOwned pages,
//    Cleanup of everything owned).
//  - What most records lack (a lease, labels, an end) sits in a side table
//    of Extras, so the node does not carry it.
//  - A record's creation time is the time in its ID.
//
// A dropped tombstone whose children are still held (a thread outlives the
// connection it was opened through) stays as a "ghost": out of the ID index,
// invisible to lookups, kept only so its children can still report its ID;
// it is freed with its last child. Ghosts are also made at restore for
// referenced records the store no longer holds.
//
// Not thread-safe: the owning shard's mutex guards it.

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/types/span.h"
#include "service/id/id.h"
#include "service/model/kind.h"
#include "service/model/record.h"

namespace registrar {

class RecordTable {
 public:
  using Ref = uint32_t;
  using OwnerRef = uint32_t;
  static constexpr Ref kNone = 0xFFFFFFFFu;

  RecordTable();
  RecordTable(const RecordTable&) = delete;
  RecordTable& operator=(const RecordTable&) = delete;
  ~RecordTable();

  // Makes room for about `n` more records (used before a restore).
  void Reserve(uint64_t n);

  // ----- Lookups (ghosts are never found)

  // The record with this ID, or kNone. Finds pending records too (see
  // Insert): what changes records must see everything it may cascade to.
  Ref Find(Id128 id) const;
  // Whether any of `ids` is held (pending or ghost records included, as
  // Find). Cheap for what Issue mints: IDs increasing in `hi` (the ms and
  // sequence), all above every ID ever added here, need no lookup.
  bool HoldsAny(absl::Span<const Id128> ids) const;
  // Like Find, but kNone for a pending record: what reads use, so nobody
  // learns of a record before its commit is durable.
  Ref FindCommitted(Id128 id) const;
  // The live record `id` of `kind` owned by `owner`, or kNone; kNone too
  // while it is ending (nothing new may be attached to it).
  Ref FindLiveOwned(Id128 id, Kind kind, OwnerRef owner) const;
  OwnerRef FindOwner(const Owner& owner) const;

  Id128 id(Ref r) const { return node(r).id; }
  Kind kind(Ref r) const { return node(r).kind; }
  State state(Ref r) const { return node(r).state; }
  // Revision of the record's last change; 0 while it is pending.
  uint64_t revision(Ref r) const { return node(r).revision; }
  bool pending(Ref r) const { return node(r).revision == 0; }
  // A live record whose end is staged: its commit is queued, not yet
  // durable. Reads still see it live; changes treat it as ending (no new
  // children under it, no second end). Cleared when the end is applied or
  // its commit failed.
  bool ending(Ref r) const { return (node(r).flags & kEnding) != 0; }
  void set_ending(Ref r, bool on) {
    node(r).flags = on ? (node(r).flags | kEnding) : (node(r).flags & ~kEnding);
  }
  OwnerRef owner_of(Ref r) const { return node(r).owner; }
  const Owner& owner(OwnerRef o) const { return owners_[o]->key; }
  // Live records of an owner (0 for kNone).
  uint64_t live_count(OwnerRef o) const;
  // The lease a connection is bound to (zero when none).
  Id128 lease_of(Ref r) const;

  // A copy of the record.
  RecordView View(Ref r) const;

  // An owner's records (live and ended, pending included) in ID order,
  // starting after `after` (zero: from the first). `fn(Ref)` returns false
  // to stop.
  template <typename Fn>
  void ForEachOwned(OwnerRef o, Id128 after, Fn fn) const;

  // Every live connection bound to a lease: fn(Ref, Id128 lease).
  template <typename Fn>
  void ForEachLeasedConnection(Fn fn) const;

  // Appends `root` (if live) and its live descendants to *out, skipping
  // those already in *seen: a thread's runs, a run's requests, a
  // connection's runs and requests (threads outlive connections).
  void CollectCascade(Ref root, std::vector<Ref>* out,
                      absl::flat_hash_set<Ref>* seen) const;

  // ----- Changes

  // Adds a new live record. Its parent and connection (if set) must be
  // records of this table. With v.revision == 0 the record is pending: its
  // commit is queued, not yet durable; set_revision() once it is, or
  // Remove() it if the commit failed.
  Ref Insert(const RecordView& v);
  // Insert of each of `records`, all of one owner (an Issue's or an
  // OpenContext's): the owner is looked up once, and a parent or connection
  // that repeats is looked up once. Appends their Refs to *refs if given.
  void InsertAll(absl::Span<const RecordView> records,
                 std::vector<Ref>* refs = nullptr);
  // The record `r` if it still holds `id` (a Ref kept across an unlock may
  // have been freed and reused), else kNone.
  Ref Recheck(Ref r, Id128 id) const {
    return r < allocated_ && !is_ghost(r) && node(r).id == id &&
                   node(r).owner != kNone
               ? r
               : kNone;
  }
  void set_revision(Ref r, uint64_t revision) { node(r).revision = revision; }
  // Takes out a live record whose commit failed. Nothing can be linked
  // below it (its ID was never handed out); if something is, the node
  // stays as a ghost for it.
  void Remove(Ref r);

  // Adds a loaded record of any state. Links to records not loaded yet are
  // resolved by FinishRestore(), which must follow the last Restore().
  Ref Restore(RecordView&& v);
  void FinishRestore();

  // Ends the live record `r` (and clears its ending mark).
  void End(Ref r, State state, int64_t ended_ms,
           const std::shared_ptr<const std::string>& reason, uint64_t revision);

  // IDs of tombstones that ended at or before `cutoff_ms`, oldest first
  // (DropTombstones forgets them once their removal is committed).
  std::vector<Id128> DueTombstones(int64_t cutoff_ms) const;

  // Tombstones one owner may hold (0: no bound), so that churn by one
  // owner cannot grow memory without limit; an owner past it loses its
  // oldest tombstones early (ExcessTombstones). Set before any record.
  void set_owner_tombstone_cap(uint64_t cap) { tombstone_cap_ = cap; }
  // Tombstones held for the owner (0 for kNone).
  uint64_t tombstone_count(OwnerRef o) const;
  // For every owner past the cap, the IDs of its oldest tombstones (by ID,
  // i.e. by creation), as many as it is past the cap; those that ended at
  // or before `cutoff_ms` are counted but not listed (DueTombstones lists
  // them).
  std::vector<Id128> ExcessTombstones(int64_t cutoff_ms) const;
  // Forgets the tombstones among `ids` (their removal from the store is
  // committed first); IDs not held as tombstones are skipped. Returns how
  // many were dropped.
  uint64_t DropTombstones(absl::Span<const Id128> ids);

  // ----- Accounting

  struct Memory {
    uint64_t nodes = 0;       // node chunks
    uint64_t id_index = 0;    // hash set of Refs
    uint64_t extras = 0;      // side table (+ labels/reasons not counted)
    uint64_t owners = 0;      // owner entries + owner hash map
    uint64_t owner_ids = 0;   // per-owner B-trees (estimate)
    uint64_t tombstones = 0;  // end-order queue
    uint64_t ghosts = 0;      // count, not bytes
  };
  Memory MemoryUsage() const;
  uint64_t size() const { return index_.size(); }

 private:
  static constexpr uint32_t kChunkBits = 12;  // 4096 nodes (256 KiB) a chunk
  static constexpr uint32_t kChunkSize = 1u << kChunkBits;
  static constexpr uint8_t kGhost = 1;
  static constexpr uint8_t kEnding = 2;

  // 64 bytes. Refs are kNone when unset.
  struct Node {
    Id128 id;
    uint64_t revision;
    OwnerRef owner;
    Ref parent;
    Ref connection;
    Ref first_child;   // head of this node's child list
    Ref next_sibling;  // in the parent's list (free list link when free)
    Ref prev_sibling;
    Ref next_on_conn;  // in the connection's list
    Ref prev_on_conn;
    uint32_t extra;  // index into extras_, or kNone
    Kind kind;
    State state;
    uint8_t flags;
    uint8_t unused;
  };
  static_assert(sizeof(Node) == 64);

  struct Extra {
    Id128 lease;
    int64_t ended_ms = 0;
    std::shared_ptr<const Labels> labels;
    std::shared_ptr<const std::string> end_reason;
  };

  // Orders an owner's Refs by the ID of their node.
  struct ByIdLess {
    using is_transparent = void;
    const RecordTable* table;
    bool operator()(Ref a, Ref b) const { return table->id(a) < table->id(b); }
    bool operator()(Ref a, Id128 b) const { return table->id(a) < b; }
    bool operator()(Id128 a, Ref b) const { return a < table->id(b); }
  };

  struct OwnerEntry {
    Owner key;  // also the owners_by_key_ key: the map's slots stay small
    uint64_t live = 0;
    uint64_t ended = 0;  // tombstones
    absl::btree_set<Ref, ByIdLess> ids;
    OwnerEntry(const RecordTable* t, const Owner& o)
        : key(o), ids(ByIdLess{t}) {}
  };

  // Hashes a Ref by its node's ID, so the index stores only Refs.
  struct RefHash {
    using is_transparent = void;
    const RecordTable* table;
    size_t operator()(Ref r) const { return absl::Hash<Id128>{}(table->id(r)); }
    size_t operator()(Id128 id) const { return absl::Hash<Id128>{}(id); }
  };
  struct RefEq {
    using is_transparent = void;
    const RecordTable* table;
    bool operator()(Ref a, Ref b) const { return a == b; }
    bool operator()(Ref a, Id128 b) const { return table->id(a) == b; }
    bool operator()(Id128 a, Ref b) const { return a == table->id(b); }
  };

  // A link found missing during restore, resolved by FinishRestore.
  struct PendingLink {
    Ref child;
    Id128 target;
    bool is_connection;  // else parent
  };

  Node& node(Ref r) { return chunks_[r >> kChunkBits][r & (kChunkSize - 1)]; }
  const Node& node(Ref r) const {
    return chunks_[r >> kChunkBits][r & (kChunkSize - 1)];
  }
  bool is_ghost(Ref r) const { return (node(r).flags & kGhost) != 0; }

  Ref AllocNode();
  void FreeNode(Ref r);
  Extra& MutableExtra(Ref r);
  void FreeExtra(Ref r);
  OwnerRef GetOrAddOwner(const Owner& owner);
  void RemoveOwner(OwnerRef o);

  // Adds the node (not linked yet) to the index and its owner `o`
  // (GetOrAddOwner(v.owner)).
  Ref AddNode(const RecordView& v, State state, OwnerRef o);
  // Kind a parent (or connection) link of `child` must point at.
  Kind LinkKind(Ref child, bool is_connection) const;
  // Links `child` to the record `target_id` if it is held; false if not.
  bool TryLink(Ref child, Id128 target_id, bool is_connection);
  struct List;
  static const List kParentList;
  static const List kConnectionList;
  void Link(const List& list, Ref child, Ref head);
  void Unlink(const List& list, Ref child);
  // Links `child` into the child list of `target`.
  void LinkParent(Ref child, Ref parent);
  void LinkConnection(Ref child, Ref connection);
  void UnlinkParent(Ref child);
  void UnlinkConnection(Ref child);
  // Frees `r` if it is a ghost whose last child went.
  void MaybeFreeGhost(Ref r);
  Ref MakeGhost(Id128 id, Kind kind);
  // Drops a record (a tombstone, or a pending record whose commit failed):
  // out of the index and its owner; freed, or a ghost while it still has
  // children.
  void Drop(Ref r);
  int64_t ended_ms(Ref r) const;
  // Counts a new tombstone of owner `o`, ended at `ended_ms`.
  void AddTombstone(Ref r, OwnerRef o, int64_t ended_ms);
  // Whether a tombstones_ entry still names the tombstone it was made for
  // (an early drop leaves its entry behind; the node may be reused).
  bool Current(const std::pair<int64_t, Ref>& entry) const;
  // Pops stale entries off the front; rebuilds the queue when stale ones
  // are the larger part, so its size stays bounded by the tombstones held.
  void TrimTombstoneQueue();

  std::vector<std::unique_ptr<Node[]>> chunks_;
  uint32_t allocated_ = 0;  // nodes handed out from chunks_ (incl. freed)
  Ref free_nodes_ = kNone;
  uint64_t ghosts_ = 0;

  absl::flat_hash_set<Ref, RefHash, RefEq> index_;
  // The largest Id128::hi ever added (never lowered): IDs above it cannot
  // be held (HoldsAny).
  uint64_t max_hi_ = 0;

  std::vector<Extra> extras_;
  std::vector<uint32_t> free_extras_;

  absl::flat_hash_map<Owner, OwnerRef> owners_by_key_;
  std::vector<std::unique_ptr<OwnerEntry>> owners_;  // null: free slot
  std::vector<OwnerRef> free_owners_;

  // Ended records in end order, for retention. May hold stale entries of
  // tombstones dropped early (Current() tells), at most about as many as
  // tombstones held (TrimTombstoneQueue).
  std::deque<std::pair<int64_t, Ref>> tombstones_;
  uint64_t tombstone_count_ = 0;  // tombstones held
  uint64_t tombstone_cap_ = 0;    // per owner; 0: none
  // Owners holding more than tombstone_cap_ tombstones.
  absl::flat_hash_set<OwnerRef> over_cap_;

  // Restore only.
  std::vector<PendingLink> pending_links_;
  // Each owner's latest thread, run and connection so far: what a loaded
  // record's links nearly always name, found without an index probe.
  struct Recent {
    Id128 id[3];
    Ref ref[3] = {kNone, kNone, kNone};
  };
  std::vector<Recent> recent_;
  static int RecentSlot(Kind kind);
};

// ---------------------------------------------------------------------------

template <typename Fn>
void RecordTable::ForEachOwned(OwnerRef o, Id128 after, Fn fn) const {
  if (o == kNone) return;
  const auto& ids = owners_[o]->ids;
  auto it = after.is_zero() ? ids.begin() : ids.upper_bound(after);
  for (; it != ids.end(); ++it) {
    if (!fn(*it)) return;
  }
}

template <typename Fn>
void RecordTable::ForEachLeasedConnection(Fn fn) const {
  for (Ref r : index_) {
    const Node& n = node(r);
    if (n.kind != Kind::kConnection || n.state != State::kLive ||
        n.extra == kNone) {
      continue;
    }
    const Id128 lease = extras_[n.extra].lease;
    if (!lease.is_zero()) fn(r, lease);
  }
}

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_RECORD_TABLE_H_
