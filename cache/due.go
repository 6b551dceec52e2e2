package cache

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// OriginSource says how a subject's origin (the instant its personal data
// came into being, from which grace and default periods count) was learnt.
// Higher values are more authoritative.
type OriginSource uint8

// Origin sources, least authoritative first.
const (
	// OriginNone: nothing recorded. The subject is evaluated as if its data
	// originated at the instant asked, and nothing is stored.
	OriginNone OriginSource = iota
	// OriginObserved: the first time gdprgate met the subject — a 2xx
	// answer of the backend naming it, or its first evidence.
	OriginObserved
	// OriginStated: the backend said when it created the data (a route's
	// origin_from), or an evidence import carried the subject's origin.
	OriginStated
	// OriginSet: set by an operator (PUT /v1/subjects/…, a seed).
	OriginSet
)

var originNames = [...]string{"none", "observed", "stated", "set"}

func (o OriginSource) String() string {
	if int(o) < len(originNames) {
		return originNames[o]
	}
	return "unknown"
}

// Due is one entry of the due index: a subject and its due score. The score
// is opaque to callers but for At; pass it back unchanged in a SweepUpdate.
type Due struct {
	Ref   model.SubjectRef
	Score float64
	// Snapshot, when not nil, is the subject as the store read it with its
	// due score (a store that reads records and scores together saves the
	// sweeper a Snapshots round trip). It is as good as one read later: a
	// write in between changes the score, so the commit fails and the
	// subject is read again.
	Snapshot *Snapshot
	// Token is the store's own copy of what it read for the subject, opaque
	// to callers: passed back in SweepUpdate.Token, it lets the commit
	// compare the whole record as read instead of reading it again.
	Token string
}

// DueSharder is implemented by a store whose due index splits into
// shards holding disjoint sets of subjects: DueShard is Due restricted to
// shard i of n. The sweeper reads one shard while it decides and commits
// another (a read never sees a commit in flight, as it would with one
// index), so that the store's work and the sweeper's overlap.
type DueSharder interface {
	DueShard(ctx context.Context, until time.Time, limit, shard, shards int) ([]Due, error)
}

// Scores of the due index. A positive score is the due instant in unix
// milliseconds, rounded up so that the state has moved when it is processed.
// A write marks its subject with a unique negative score ("recompute now"):
// unique so that a sweeper's conditional commit can tell a write came in
// between. NoTransition (+Inf) keeps a subject without a next transition
// in the index, so that a register change still finds it.
var NoTransition = math.Inf(1)

// At is the due instant: zero for a recompute mark, the zero time too for
// NoTransition (check Never first).
func (d Due) At() time.Time {
	if d.Score <= 0 || math.IsInf(d.Score, 1) {
		return time.Time{}
	}
	return time.UnixMilli(int64(d.Score)).UTC()
}

// Marked reports whether a write marked the subject for recomputation.
func (d Due) Marked() bool { return d.Score <= 0 }

// Never reports whether the subject has no next transition.
func (d Due) Never() bool { return math.IsInf(d.Score, 1) }

// DueScore is the index score of a next transition instant (zero: none).
func DueScore(next time.Time) float64 {
	if next.IsZero() {
		return NoTransition
	}
	ms := next.UnixMilli()
	if next.After(time.UnixMilli(ms)) {
		ms++ // round up: never process a transition before its instant
	}
	if ms <= 0 {
		ms = 1 // positive scores are instants; <= 0 are recompute marks
	}
	return float64(ms)
}

// FormatScore writes a score so that it parses back to the same float64.
func FormatScore(f float64) string {
	if math.IsInf(f, 1) {
		return "+inf"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// SubjectMember is a subject's member string in store indexes (due index,
// children sets): "<len(entity)>:<entity>:<id>", unambiguous whatever the id.
func SubjectMember(ref model.SubjectRef) string {
	return strconv.Itoa(len(ref.Entity)) + ":" + ref.Entity + ":" + ref.ID
}

// ParseSubjectMember reverses SubjectMember.
func ParseSubjectMember(m string) (model.SubjectRef, error) {
	n, rest, ok := strings.Cut(m, ":")
	l, err := strconv.Atoi(n)
	if !ok || err != nil || l <= 0 || len(rest) < l+1 || rest[l] != ':' {
		return model.SubjectRef{}, errors.New("cache: malformed subject member")
	}
	return model.SubjectRef{Entity: rest[:l], ID: rest[l+1:]}, nil
}

// Applied is what the lifecycle executor last did for a subject: which
// obliviated bits it created deletion work for, and how many deletion
// rounds it created (deletion ids derive from it, so that a sweeper
// repeating a batch after a crash recreates the same ids and the store
// refuses the duplicates).
type Applied struct {
	Obliviated uint32 `json:"o"`
	Round      int    `json:"r"`
}

// Snapshot is what the lifecycle executor needs of one subject.
type Snapshot struct {
	// Record is the subject; its Subject.Origin is zero when OriginNone.
	Record SubjectRecord
	Origin OriginSource
	// Inherited is the evidence of the subject's parent.
	Inherited []model.Evidence
	Applied   Applied
}

// SweepUpdate is the sweeper's result for one subject.
type SweepUpdate struct {
	Ref model.SubjectRef
	// Expect is the due score the sweeper read; the update is applied only
	// if it is unchanged.
	Expect float64
	// Next is the subject's new due score (DueScore).
	Next float64
	// Applied is stored when AppliedChanged (most sweeps change nothing
	// there: not writing it saves a write, and an absent record is the
	// zero Applied).
	Applied        Applied
	AppliedChanged bool
	// Token is the Due entry's Token (empty: the store reads the subject
	// again to compare its score).
	Token string
}

// RecomputeProgress is the re-indexing of every subject after a register
// change: the sweeper walks the due index (ScanDue) from Cursor and
// recomputes each subject.
type RecomputeProgress struct {
	// Version is the register version being recomputed (0: none ever).
	Version int64  `json:"version"`
	Cursor  string `json:"cursor"`
	// Scanned is how many subjects were recomputed so far.
	Scanned  int64     `json:"scanned"`
	Done     bool      `json:"done"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}
