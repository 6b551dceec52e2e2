package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/model"
)

// The due index here is a map sorted on demand: the in-memory store serves
// the demo and tests, where a few thousand subjects is a lot.

func (s *Store) dueSorted(less func(a, b cache.Due) int, keep func(cache.Due) bool) []cache.Due {
	out := make([]cache.Due, 0, len(s.due))
	for ref, score := range s.due {
		d := cache.Due{Ref: ref, Score: score}
		if keep == nil || keep(d) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, less)
	return out
}

func byScore(a, b cache.Due) int {
	if c := cmp.Compare(a.Score, b.Score); c != 0 {
		return c
	}
	return strings.Compare(cache.SubjectMember(a.Ref), cache.SubjectMember(b.Ref))
}

func byMember(a, b cache.Due) int {
	return strings.Compare(cache.SubjectMember(a.Ref), cache.SubjectMember(b.Ref))
}

// Due lists subjects due at or before until, earliest first.
func (s *Store) Due(ctx context.Context, until time.Time, limit int) ([]cache.Due, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	max := float64(until.UnixMilli())
	out := s.dueSorted(byScore, func(d cache.Due) bool { return d.Score <= max })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ScanDue walks the due index in subject order; the cursor is the last
// subject returned.
func (s *Store) ScanDue(ctx context.Context, cursor string, count int) ([]cache.Due, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	if count <= 0 {
		count = 100
	}
	out := s.dueSorted(byMember, func(d cache.Due) bool { return cursor == "" || cache.SubjectMember(d.Ref) > cursor })
	if len(out) <= count {
		return out, "", nil
	}
	out = out[:count]
	return out, cache.SubjectMember(out[len(out)-1].Ref), nil
}

// DueCount counts indexed subjects and those due at or before until.
func (s *Store) DueCount(ctx context.Context, until time.Time) (int, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, 0, err
	}
	max := float64(until.UnixMilli())
	due := 0
	for _, score := range s.due {
		if score <= max {
			due++
		}
	}
	return len(s.due), due, nil
}

// Snapshots reads what the lifecycle executor needs of each subject.
func (s *Store) Snapshots(ctx context.Context, refs []model.SubjectRef) ([]cache.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make([]cache.Snapshot, len(refs))
	for i, ref := range refs {
		sub := s.subjects[ref]
		if sub == nil {
			out[i] = cache.Snapshot{Record: cache.SubjectRecord{Subject: model.Subject{Ref: ref}}}
			continue
		}
		rec, src := s.record(ref, sub)
		snap := cache.Snapshot{Record: rec, Origin: src, Applied: sub.applied}
		if rec.Subject.Parent != nil {
			if p := s.subjects[*rec.Subject.Parent]; p != nil {
				snap.Inherited = sortedEvidence(p.evidence)
			}
		}
		out[i] = snap
	}
	return out, nil
}

// CommitSweep applies the updates whose due score is unchanged.
func (s *Store) CommitSweep(ctx context.Context, us []cache.SweepUpdate) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	ok := make([]bool, len(us))
	for i, u := range us {
		cur, in := s.due[u.Ref]
		if !in || cur != u.Expect {
			continue
		}
		s.due[u.Ref] = u.Next
		if sub := s.subjects[u.Ref]; sub != nil && u.AppliedChanged {
			sub.applied = u.Applied
		}
		ok[i] = true
	}
	return ok, nil
}

// Recompute is the progress of re-indexing after a register change.
func (s *Store) Recompute(ctx context.Context) (cache.RecomputeProgress, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return cache.RecomputeProgress{}, err
	}
	return s.recompute, nil
}

// SaveRecompute records progress of the current recompute.
func (s *Store) SaveRecompute(ctx context.Context, p cache.RecomputeProgress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	if p.Version != s.recompute.Version {
		return fmt.Errorf("save recompute: %w: registers version %d is being recomputed, not %d", cache.ErrConflict, s.recompute.Version, p.Version)
	}
	s.recompute = p
	return nil
}

// AcquireLease takes or extends the named lease.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, fmt.Errorf("acquire lease: name, holder and a positive ttl are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return false, err
	}
	now := time.Now() // leases expire in real time, like Redis keys
	if l, ok := s.leases[name]; ok && l.holder != holder && now.Before(l.until) {
		return false, nil
	}
	s.leases[name] = lease{holder: holder, until: now.Add(ttl)}
	return true, nil
}

// ReleaseLease gives the lease up if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	if l, ok := s.leases[name]; ok && l.holder == holder {
		delete(s.leases, name)
	}
	return nil
}

// AdmitDeletions applies the mass-deletion guard.
func (s *Store) AdmitDeletions(ctx context.Context, n, limit int, window time.Duration, at time.Time, confirm bool) (bool, int, error) {
	if n <= 0 {
		return false, 0, fmt.Errorf("admit deletions: n must be positive")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return false, 0, err
	}
	cut := at.Add(-window)
	kept := s.guard[:0]
	for _, t := range s.guard {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	s.guard = kept
	c := len(kept)
	if !confirm && c+n > limit {
		return false, c, nil
	}
	for range n {
		s.guard = append(s.guard, at)
	}
	return true, c, nil
}
