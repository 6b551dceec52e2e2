package cache

import (
	"context"
	"errors"
	"fmt"

	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// ErrNotEmpty: a seed was loaded into a store that already has registers.
var ErrNotEmpty = errors.New("store already has registers")

// LoadSeed loads a registers file (registers, subjects, evidence) into an
// empty store: one whose register version is 0. It refuses a store that has
// registers (ErrNotEmpty) so that a restart with --seed never overwrites an
// operator's changes. The registers are saved first (version 1), then the
// subjects, then all evidence in one atomic batch; every step is audited as
// actor "system". A failure part-way leaves the registers saved: re-seeding
// then needs a fresh store.
func LoadSeed(ctx context.Context, s Store, seed *model.Seed) error {
	ix, err := s.Registers(ctx)
	if err != nil {
		return fmt.Errorf("seed: read registers: %w", err)
	}
	if ix.Version != 0 {
		return fmt.Errorf("seed: %w (version %d)", ErrNotEmpty, ix.Version)
	}
	regs := seed.Registers
	if _, err := s.SaveRegisters(ctx, &regs, 0, audit.Entry{Actor: "system", Action: "register.seed", Object: "registers"}); err != nil {
		return fmt.Errorf("seed: save registers: %w", err)
	}
	for i, sub := range seed.Subjects {
		if err := s.PutSubject(ctx, sub, audit.Entry{Actor: "system", Action: "subject.seed", Object: "subjects"}); err != nil {
			return fmt.Errorf("seed: subjects[%d]: %w", i, err)
		}
	}
	if len(seed.Evidence) > 0 {
		if _, err := s.PutEvidence(ctx, seed.Evidence, audit.Entry{
			Actor: "system", Action: "evidence.seed", Object: "evidence",
			Detail: map[string]string{"count": fmt.Sprint(len(seed.Evidence))},
		}); err != nil {
			return fmt.Errorf("seed: evidence: %w", err)
		}
	}
	return nil
}
