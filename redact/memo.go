package redact

import "encoding/binary"

// memoDepths and memoKeys bound the key memo: the objects of the first
// depths, their first keys.
const (
	memoDepths = 16
	memoKeys   = 64
)

// keyMemos are the key memos of a rewriter: per depth, one for the objects
// under a node of the paths (whose keys are looked up) and one for the
// objects only validated (a mapped value kept or cut whole, or one no path
// reaches).
type keyMemos struct {
	mapped, plain [memoDepths]keyMemo
}

// keyMemo holds the keys, in order, of the last object read at one depth
// (under node n, nil for a plain one). The items of a list repeat their
// keys in the same order, so each key of the next item is first compared
// with the one at its position — a word or two — instead of being scanned
// and looked up. The memo holds the keys' bytes, not offsets, so it stays
// true whatever src the scanner reads next.
type keyMemo struct {
	n    *node
	keys []memoKey
}

// memoKey is a key of at most 15 bytes that scanned as a plain string (no
// escape, no byte outside ASCII; hence no quote, backslash or control
// byte) and the node lookup gave it. Its bytes and its closing quote are
// w0, w1 (little-endian, zero past the quote); m0, m1 mask them; l is the
// key's length. A position whose key could not be remembered holds an
// entry that matches nothing.
type memoKey struct {
	w0, w1, m0, m1 uint64
	l              int
	c              *node
}

// memoFor returns the key memo for an object at the current depth under n
// (nil: a plain object), emptied when it was another node's; nil when the
// memo is off or below memoDepths.
func (s *scanner) memoFor(n *node) *keyMemo {
	d := s.depth - 1
	if s.memo == nil || d < 0 || d >= memoDepths {
		return nil
	}
	km := &s.memo.plain[d]
	if n != nil {
		km = &s.memo.mapped[d]
	}
	if km.n != n {
		km.n, km.keys = n, km.keys[:0]
	}
	return km
}

// memoHit reports whether the string at j (its opening quote) is the
// remembered key e. The key's bytes are plain, so equal bytes with the
// closing quote after them are that key, validated: what str and lookup
// would say.
func (s *scanner) memoHit(j int, e *memoKey) bool {
	a := j + 1
	if a+16 > len(s.src) {
		return false
	}
	b := s.src[a : a+16 : a+16]
	return binary.LittleEndian.Uint64(b)&e.m0 == e.w0 &&
		binary.LittleEndian.Uint64(b[8:])&e.m1 == e.w1
}

// remember records, at position k of km, the key src[a:a+l] (scanned with
// flags) and its node.
func (km *keyMemo) remember(k int, src []byte, a, l int, flags uint8, c *node) {
	if k > len(km.keys) || k >= memoKeys {
		return
	}
	e := memoKey{w0: 1} // matches nothing: x&0 != 1
	if flags == 0 && l < 16 {
		// The key and its closing quote.
		var b [16]byte
		copy(b[:], src[a:a+l+1])
		e = memoKey{l: l, c: c,
			w0: binary.LittleEndian.Uint64(b[:8]), w1: binary.LittleEndian.Uint64(b[8:]),
			m0: byteMask(min(l+1, 8)), m1: byteMask(max(l+1-8, 0))}
	}
	if k == len(km.keys) {
		km.keys = append(km.keys, e)
	} else {
		km.keys[k] = e
	}
}

// byteMask masks the low n bytes of a word (n <= 8).
func byteMask(n int) uint64 {
	if n >= 8 {
		return ^uint64(0)
	}
	return 1<<(8*n) - 1
}
