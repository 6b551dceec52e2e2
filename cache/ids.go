package cache

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/gdprgate/gdprgate/policy/model"
)

// NewID returns prefix followed by 16 random hex digits: ids given to
// evidence records that came without one.
func NewID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + hex.EncodeToString(b[:])
}

// CloneRegisters deep-copies r so that an index built from the copy is not
// affected by later changes of the caller's value.
func CloneRegisters(r *model.Registers) (*model.Registers, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("copy registers: %w", err)
	}
	var c model.Registers
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("copy registers: %w", err)
	}
	return &c, nil
}
