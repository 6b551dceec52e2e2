// Package audit defines the append-only audit trail's entries and the keyed
// hashing that keeps data-subject identifiers out of it in clear.
package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// Entry is one audit record. It never holds personal data in clear: subjects
// appear only as keyed hashes (Hasher.Subject), field changes by name only.
type Entry struct {
	// ID is assigned by the store when the entry is appended (stream order).
	ID   string    `json:"id,omitempty"`
	Time time.Time `json:"time"`
	// Actor is who did it: an admin token's name, a caller id, "system".
	Actor string `json:"actor"`
	// Action is a dotted verb: "register.replace", "evidence.create",
	// "evidence.revoke", "wipe.request", "wipe.step", "wipe.cancel",
	// "subject.rectify", …
	Action string `json:"action"`
	// Object names what changed without personal data: "legalisations/contract-care",
	// "wipes/w-123".
	Object string `json:"object,omitempty"`
	// Subject is the keyed hash of the data subject concerned, if any.
	Subject string `json:"subject,omitempty"`
	Before  int64  `json:"before_version,omitempty"`
	After   int64  `json:"after_version,omitempty"`
	// Detail carries small non-personal facts (step name, result, field names).
	Detail map[string]string `json:"detail,omitempty"`
}

// Hasher turns subject references into stable keyed hashes, so that audit
// entries and logs about the same subject can be joined without revealing it.
type Hasher struct{ key []byte }

// NewHasher returns a hasher with the given secret key. An empty key still
// hashes (so nothing is logged in clear) but is guessable; configure one.
func NewHasher(key []byte) Hasher { return Hasher{key: append([]byte(nil), key...)} }

// Subject is "h:" followed by 16 bytes of HMAC-SHA256 over "entity/id", hex.
func (h Hasher) Subject(ref model.SubjectRef) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(ref.Entity))
	m.Write([]byte{'/'})
	m.Write([]byte(ref.ID))
	var sum [32]byte
	return "h:" + hex.EncodeToString(m.Sum(sum[:0])[:16])
}
