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

// Wipe statuses.
const (
	WipeQueued    = "queued"
	WipeSuspended = "suspended"
	WipeRunning   = "running"
	WipeDone      = "done"
	WipeFailed    = "failed"
	WipeCancelled = "cancelled"
)

// WipeStep is one deletion call of a wipe and its outcome.
type WipeStep struct {
	Name      string    `json:"name"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Status    string    `json:"status"` // pending, suspended, done, failed, skipped
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	DoneAt    time.Time `json:"done_at,omitempty"`
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
}

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
	// invalidation. An unknown subject's origin is recorded as first seen.
	Facts(ctx context.Context, ref model.SubjectRef, now time.Time) (Facts, error)
	// Subject returns everything stored for ref (Known=false when nothing).
	Subject(ctx context.Context, ref model.SubjectRef) (SubjectRecord, error)
	// PutSubject creates or replaces a subject's metadata (origin, parent).
	PutSubject(ctx context.Context, s model.Subject, entry audit.Entry) error

	// PutEvidence stores a batch atomically (all or nothing). Records must be
	// validated by the caller. A record whose (legalisation_id, evidence_key)
	// already exists replaces that record (idempotent re-import); records
	// without an id get one. It returns the stored records.
	PutEvidence(ctx context.Context, evs []model.Evidence, entry audit.Entry) ([]model.Evidence, error)
	// RevokeEvidence deletes one evidence record of a subject.
	RevokeEvidence(ctx context.Context, ref model.SubjectRef, id string, entry audit.Entry) error
	// EvidenceByKey finds evidence by its legalisation and evidence_key.
	EvidenceByKey(ctx context.Context, legalisationID, evidenceKey string) (model.Evidence, error)

	// EnqueueWipe stores w, restricts its subject and queues it, atomically.
	EnqueueWipe(ctx context.Context, w WipeRecord, entry audit.Entry) error
	// SaveWipe records a wipe's progress.
	SaveWipe(ctx context.Context, w WipeRecord) error
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

	// AppendAudit appends an entry on its own and returns its id.
	AppendAudit(ctx context.Context, e audit.Entry) (string, error)
	// Audit reads entries after the id after ("" = from the start), oldest
	// first, at most limit, and the id to continue from.
	Audit(ctx context.Context, after string, limit int) ([]audit.Entry, string, error)

	// Ping checks the backing store.
	Ping(ctx context.Context) error
	// Close stops background work and releases connections.
	Close() error
}
