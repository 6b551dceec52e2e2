// Package cache is gdprgate's store: the registers, evidence, subject
// metadata, restrictions, the wipe queue and the audit trail, with a local
// read-through cache so that a warm decision makes no network round trip.
//
// Two implementations satisfy Store: Redis (shared by every sidecar, durable)
// and in-memory (the embedded default: one process, not durable).
package cache

import (
	"context"
	"errors"
	"time"

	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Errors callers branch on. Implementations wrap them with context.
var (
	// ErrNotFound: no such object.
	ErrNotFound = errors.New("not found")
	// ErrConflict: an optimistic-concurrency version did not match.
	ErrConflict = errors.New("version conflict")
	// ErrUnavailable: the backing store cannot be reached and the local cache
	// is too old to serve (callers fail closed).
	ErrUnavailable = errors.New("store unavailable")
)

// Facts is what a decision needs to know of one subject, as the store sees it
// at the instant asked.
type Facts struct {
	State lifecycle.State
	// Known: the store has metadata or evidence for the subject.
	Known bool
	// Restricted: a wipe restricted or removed the subject; the gate answers
	// 404 for it whatever the lifecycle says.
	Restricted bool
	// RegistersVersion is the register version the state was computed with.
	RegistersVersion int64
	// Origin says where the origin the state counts from was recorded;
	// OriginNone: nothing is recorded and the state is evaluated from the
	// instant asked (the gate records an origin after the backend's first
	// 2xx answer naming the subject).
	Origin OriginSource
	// Stale: served from the local cache while the backing store is
	// unreachable (within the configured staleness bound).
	Stale bool
}

// SubjectRecord is everything stored for one subject.
type SubjectRecord struct {
	Subject  model.Subject
	Known    bool
	Evidence []model.Evidence
	// Restriction is the id of the wipe that restricted the subject ("" = none).
	Restriction string
}

// Wipe statuses. A wipe record is any deletion work: a WipeCtcAll wipe, a
// lifecycle erasure of some bits, a purge of proof communications.
const (
	WipeQueued    = "queued"
	WipeSuspended = "suspended"
	WipeRunning   = "running"
	WipeDone      = "done"
	WipeFailed    = "failed"
	WipeCancelled = "cancelled"
	// WipeHeld: stored, waiting for an approval; neither queued nor
	// restricting its subject.
	WipeHeld = "held"
	// WipeRejected: a held deletion an operator rejected (final).
	WipeRejected = "rejected"
	// WipeNotExecutable: lifecycle deletion work for bits no erasure step
	// is configured for (final, listed so it is never silently dropped).
	WipeNotExecutable = "not_executable"
)

// Deletion kinds (WipeRecord.Kind).
const (
	// KindWipe ("" too): the entity's WipeCtcAll plan; restricts the subject.
	KindWipe = "wipe"
	// KindErasure: the erasure steps of some sensitivities of the subject.
	KindErasure = "erasure"
	// KindPurge: the proof communications of purged evidence.
	KindPurge = "purge"
)

// Reasons a deletion was created (WipeRecord.Reason).
const (
	ReasonRequest   = "request"   // POST /v1/wipes (WipeCtcAll)
	ReasonLifecycle = "lifecycle" // the sweeper: obliviation
	ReasonCascade   = "cascade"   // the parent subject was wiped
	ReasonRetention = "retention" // evidence past its retention
)

// WipeStep is one deletion call of a wipe and its outcome.
type WipeStep struct {
	Name   string `json:"name"`
	Method string `json:"method"`
	Path   string `json:"path"`
	// Body is the JSON body sent with the call (erasures), "" for none.
	Body string `json:"body,omitempty"`
	// Issue marks a step held by config.suspend_wipe_issue.
	Issue     bool      `json:"issue,omitempty"`
	Status    string    `json:"status"` // pending, suspended, done, failed, skipped
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	DoneAt    time.Time `json:"done_at,omitzero"`
}

// WipeRecord is a WipeCtcAll request and its progress. The subject is stored
// so the worker can call the backend; it never goes to logs or the audit trail.
type WipeRecord struct {
	ID          string           `json:"id"`
	Subject     model.SubjectRef `json:"subject"`
	Scope       string           `json:"scope,omitempty"`
	Status      string           `json:"status"`
	Steps       []WipeStep       `json:"steps"`
	RequestedBy string           `json:"requested_by,omitempty"`
	CreatedAt   time.Time        `json:"created_at"`
	UpdatedAt   time.Time        `json:"updated_at"`
	Attempts    int              `json:"attempts"`
	Error       string           `json:"error,omitempty"`

	// Kind is KindWipe (also ""), KindErasure or KindPurge.
	Kind string `json:"kind,omitempty"`
	// Reason is why the work exists (Reason*; "" = ReasonRequest).
	Reason string `json:"reason,omitempty"`
	// Bits are the sensitivity bits an erasure deletes.
	Bits uint32 `json:"bits,omitempty"`
	// Parent is the id of the wipe a cascaded wipe belongs to.
	Parent string `json:"parent,omitempty"`
	// HeldFor says why a held deletion waits: "approval" or
	// "mass_deletion_guard".
	HeldFor string `json:"held_for,omitempty"`
	// DecidedBy and DecidedAt record an approval or rejection.
	DecidedBy string     `json:"decided_by,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
}

// Decide turns a held record into a queued (approve) or rejected one.
func (w *WipeRecord) Decide(approve bool, by string, at time.Time) {
	at = at.UTC()
	w.DecidedBy, w.DecidedAt, w.UpdatedAt, w.HeldFor = by, &at, at, ""
	if approve {
		w.Status = WipeQueued
		return
	}
	w.Status = WipeRejected
	for i := range w.Steps {
		w.Steps[i].Status = "skipped"
	}
}

// Restricts reports whether queuing w restricts its subject (a whole-subject
// wipe does; an erasure or a purge leaves the subject's other data visible).
func (w *WipeRecord) Restricts() bool { return w.Kind == "" || w.Kind == KindWipe }

// Claim is a wipe handed to one worker; Ack it when the wipe reached a final
// status. An un-acked claim is handed again after the idle bound (a crashed
// worker's wipe resumes elsewhere).
type Claim struct {
	WipeID string
	Token  string
}

// Store is the contract both implementations meet. Every method takes a
// context and honours its deadline. Writes are atomic with their audit entry:
// either both happen or neither does.
type Store interface {
	// Registers returns the current validated register index. A warm call is
	// served from the local cache.
	Registers(ctx context.Context) (*model.Index, error)
	// SaveRegisters replaces the whole register set when the stored version
	// equals expect (ErrConflict otherwise) and appends entry atomically. regs
	// must be valid. It returns the new version. Every sidecar sees the change
	// within the invalidation bound.
	SaveRegisters(ctx context.Context, regs *model.Registers, expect int64, entry audit.Entry) (int64, error)

	// Facts is the hot-path read: the subject's computed state at now,
	// served from the local cache until the state's next transition or an
	// invalidation. It never writes: a subject with no recorded origin is
	// evaluated from now (Facts.Origin = OriginNone).
	Facts(ctx context.Context, ref model.SubjectRef, now time.Time) (Facts, error)
	// FactsMany is Facts for several subjects (a list answer's items), in
	// refs' order: the locally cached ones at once, the others in one
	// round trip to the backing store (two when some inherit from a
	// parent not read recently).
	FactsMany(ctx context.Context, refs []model.SubjectRef, now time.Time) ([]Facts, error)
	// Subject returns everything stored for ref (Known=false when nothing).
	Subject(ctx context.Context, ref model.SubjectRef) (SubjectRecord, error)
	// PutSubject creates or replaces a subject's metadata (origin, parent),
	// keeping the parent's children index.
	PutSubject(ctx context.Context, s model.Subject, entry audit.Entry) error
	// RecordOrigin records when the subject's data originated, as seen by
	// src (OriginObserved or OriginStated), unless an origin at least as
	// authoritative is recorded: a stated origin replaces an observed one
	// once, nothing replaces a stated one or PutSubject's. It reports
	// whether it recorded. Not audited (automatic, like a cache fill).
	RecordOrigin(ctx context.Context, ref model.SubjectRef, at time.Time, src OriginSource) (bool, error)
	// Children lists the subjects whose parent is ref.
	Children(ctx context.Context, ref model.SubjectRef) ([]model.SubjectRef, error)

	// PutEvidence stores a batch, all or nothing. Records must be
	// validated by the caller. A record whose (legalisation_id, evidence_key)
	// already exists replaces that record (idempotent re-import); records
	// without an id get one. It returns the stored records. A subject with
	// no recorded origin gets one: the record's SubjectOrigin (stated) when
	// given, else entry.Time (observed: gdprgate met it then).
	PutEvidence(ctx context.Context, evs []model.Evidence, entry audit.Entry) ([]model.Evidence, error)
	// RevokeEvidence deletes one evidence record of a subject.
	RevokeEvidence(ctx context.Context, ref model.SubjectRef, id string, entry audit.Entry) error
	// RenewEvidence moves the origin of a subject's evidence records ids to
	// at (renewed_at; never backwards), atomically with entry. Records that
	// no longer exist are skipped, never recreated; it returns the renewed
	// records, and ErrNotFound when none of ids exists.
	RenewEvidence(ctx context.Context, ref model.SubjectRef, ids []string, at time.Time, entry audit.Entry) ([]model.Evidence, error)
	// EvidenceByKey finds evidence by its legalisation and evidence_key.
	EvidenceByKey(ctx context.Context, legalisationID, evidenceKey string) (model.Evidence, error)
	// EvidenceCounts is the number of stored evidence records per
	// legalisation id (legalisations without evidence are absent).
	EvidenceCounts(ctx context.Context) (map[string]int, error)

	// EnqueueWipe stores w, restricts its subject (w.Restricts()) and queues
	// it, atomically. A record with Status WipeHeld or WipeNotExecutable is
	// stored and listed only: not queued, not restricting. An existing id
	// is ErrConflict.
	EnqueueWipe(ctx context.Context, w WipeRecord, entry audit.Entry) error
	// EnqueueWipes is EnqueueWipe for several records (a wipe and its
	// cascaded children) with one audit entry each, all or nothing.
	EnqueueWipes(ctx context.Context, ws []WipeRecord, entries []audit.Entry) error
	// DecideWipe approves (queues, restricting as EnqueueWipe does) or
	// rejects a held deletion, atomically with entry; ErrConflict when it
	// is not held (decided meanwhile), ErrNotFound when unknown. It returns
	// the record as stored.
	DecideWipe(ctx context.Context, id string, approve bool, by string, at time.Time, entry audit.Entry) (WipeRecord, error)
	// HeldWipes lists held deletions, oldest first, at most limit.
	HeldWipes(ctx context.Context, limit int) ([]WipeRecord, error)
	// SaveWipe records a wipe's progress, and appends entries (the audit of
	// that progress, if any) atomically with it.
	SaveWipe(ctx context.Context, w WipeRecord, entries ...audit.Entry) error
	// Wipe returns one wipe record.
	Wipe(ctx context.Context, id string) (WipeRecord, error)
	// ListWipes returns the newest wipes first, at most limit.
	ListWipes(ctx context.Context, limit int) ([]WipeRecord, error)
	// ClaimWipe hands the next queued wipe, or one claimed by another consumer
	// and idle longer than minIdle, to consumer. It waits up to block for one;
	// (Claim{}, ErrNotFound) when there is none.
	ClaimWipe(ctx context.Context, consumer string, minIdle, block time.Duration) (Claim, error)
	// AckWipe marks a claim finished.
	AckWipe(ctx context.Context, c Claim) error
	// Unrestrict lifts a wipe's restriction (a cancelled wipe).
	Unrestrict(ctx context.Context, ref model.SubjectRef, wipeID string, entry audit.Entry) error

	// AdmitDeletions is the mass-deletion guard, shared by every sidecar:
	// it admits n deletions when fewer than limit-n+1 were admitted in the
	// window before at, or when confirm is set, and counts them. It
	// reports whether they were admitted and how many the window held
	// before.
	AdmitDeletions(ctx context.Context, n, limit int, window time.Duration, at time.Time, confirm bool) (bool, int, error)

	// Due lists subjects whose due instant is at or before until, earliest
	// first (recompute marks before everything), at most limit.
	Due(ctx context.Context, until time.Time, limit int) ([]Due, error)
	// ScanDue walks every indexed subject in an order stable under
	// concurrent changes (each present throughout is returned at least
	// once); cursor "" starts, a returned "" means done.
	ScanDue(ctx context.Context, cursor string, count int) ([]Due, string, error)
	// DueCount is the number of indexed subjects and of those due at or
	// before until.
	DueCount(ctx context.Context, until time.Time) (total, due int, err error)
	// Snapshots reads what the lifecycle executor needs of each subject,
	// in refs' order, in as few round trips as the store can.
	Snapshots(ctx context.Context, refs []model.SubjectRef) ([]Snapshot, error)
	// CommitSweep applies each update whose subject's due score is still
	// the one the sweeper read (no write came in between); it reports
	// which were applied.
	CommitSweep(ctx context.Context, us []SweepUpdate) ([]bool, error)
	// Recompute is the progress of re-indexing after a register change;
	// SaveRegisters starts a new one.
	Recompute(ctx context.Context) (RecomputeProgress, error)
	// SaveRecompute records progress if p.Version is still the one being
	// recomputed (ErrConflict otherwise: a newer change restarted it).
	SaveRecompute(ctx context.Context, p RecomputeProgress) error

	// AcquireLease takes the named lease for holder for ttl, or extends it
	// when holder has it; false when another holder has it.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease up if holder has it.
	ReleaseLease(ctx context.Context, name, holder string) error

	// AppendAudit appends an entry on its own and returns its id.
	AppendAudit(ctx context.Context, e audit.Entry) (string, error)
	// Audit reads entries after the id after ("" = from the start), oldest
	// first (by the instant they were written), at most limit (0: all),
	// and the id to continue from. Ids are opaque cursors. A write that
	// spans shards of a sharded store leaves one entry per shard, each
	// with Detail "parts" (how many) and "part_records".
	Audit(ctx context.Context, after string, limit int) ([]audit.Entry, string, error)
	// AuditCount is the number of entries in the audit trail.
	AuditCount(ctx context.Context) (int64, error)
	// TrimAudit removes every entry up to and including the id through
	// (one that Audit returned) and reports how many it removed: the
	// audit retention trims what it exported, by id.
	TrimAudit(ctx context.Context, through string) (int64, error)

	// Ping checks the backing store.
	Ping(ctx context.Context) error
	// Close stops background work and releases connections.
	Close() error
}
