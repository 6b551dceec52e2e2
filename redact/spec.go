// Package redact rewrites JSON response bodies in a single validating pass so
// that the fields a caller may not see are redacted, without building a
// generic document tree.
//
// A Spec maps field paths to a sensitivity bit and a redaction Action. Paths
// are gjson's syntax (github.com/tidwall/gjson), the subset that selects
// values: "email", "address.street", "data.#.email" ("#" is every element of
// an array), "orders.0.id" (an index), "fav\.movie" (a key with a dot),
// "contact_*.name" (wildcards); ParsePath refuses the rest with the reason.
// Compile turns a Spec into a Map whose Rewrite method copies every untouched
// span of the input byte for byte (whitespace included) and replaces only the
// values of mapped fields whose bit is not in the caller's visibility mask.
// The paths are compiled into one deterministic automaton, so a rewrite
// stays a single pass however many paths, indices and wildcards there are.
//
// Who the data is about (the subject) is either decided by the caller (no
// SubjectPath: the Planner is asked once with a nil id) or read from the body:
// a SubjectPath without "#" ("contact_id") names one subject for the whole
// body, a SubjectPath with "#" ("data.#.id") gives every element of that array
// its own subject, and the Planner is asked once per element. The subject id
// may appear after the fields it governs; the element is then scanned twice,
// which keeps the rewrite linear.
//
// Decisions worth knowing:
//   - A path selects what gjson.GetBytes selects (a differential test and a
//     fuzz target hold the two together), except that gjson returns the
//     first match and the rewriter redacts every match: every occurrence of
//     a duplicate key, every key a wildcard matches.
//   - Keys are matched by their decoded value — "em\u0061il" matches
//     "email", because every JSON consumer downstream reads it as "email" —
//     and, unless Spec.ExactCase, under Unicode simple case folding, a
//     superset of ASCII case-insensitivity: "HEALTH_NOTES" is redacted like
//     "health_notes", because many backends bind keys case-insensitively.
//   - Input must be strict RFC 8259 JSON in UTF-8. Unlike encoding/json.Valid,
//     invalid UTF-8 inside strings is rejected (the gate fails closed rather
//     than pass bytes it cannot interpret). Nesting deeper than 10000 levels is
//     rejected, as encoding/json does.
//   - A field whose subject id is missing or null is redacted as if the caller
//     could see nothing (mask 0); the Planner is not asked.
//   - A value several paths select is redacted when any of their bits is
//     hidden, with the action that discloses least (remove, null, mask, hash).
//   - On any error the output is dst unchanged: no partial body ever escapes.
package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Action says how a redacted value is replaced.
type Action uint8

const (
	// ActNull replaces the value with null (the default).
	ActNull Action = iota
	// ActRemove removes the member (key and value) or the array element.
	ActRemove
	// ActMask replaces the value with a fixed string (FieldSpec.Mask, "***" when empty).
	ActMask
	// ActHash replaces the value with "h:" and the hex of the first 16 bytes
	// of HMAC-SHA256(Spec.HashKey, value), so that values can be joined
	// without being disclosed. For a string the decoded content is hashed (so
	// "a@b" and "a\u0040b" give the same hash); for any other value its raw
	// JSON text.
	ActHash
)

var actionNames = [...]string{ActNull: "null", ActRemove: "remove", ActMask: "mask", ActHash: "hash"}

// String returns the action's config name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// ParseAction parses a config name ("null", "remove", "mask", "hash"; empty
// means "null").
func ParseAction(s string) (Action, error) {
	if s == "" {
		return ActNull, nil
	}
	for i, n := range actionNames {
		if strings.EqualFold(s, n) {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("redact: unknown action %q (want null, remove, mask or hash)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler so configs can name actions.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// DefaultMask is the replacement string of ActMask when FieldSpec.Mask is empty.
const DefaultMask = "***"

// MaxBit is the highest sensitivity bit.
const MaxBit = 31

// FieldSpec maps one field path to a sensitivity bit.
type FieldSpec struct {
	// Path is a field path in gjson's syntax; see ParsePath.
	Path   string
	Bit    int
	Action Action
	// Mask is the replacement string for ActMask.
	Mask string
}

// Spec describes what to redact in one kind of body.
type Spec struct {
	Fields []FieldSpec
	// SubjectPath names where the subject id is in the body; see the package doc.
	SubjectPath string
	// HashKey is the HMAC key of ActHash; required when any field hashes.
	HashKey []byte
	// ExactCase matches object keys byte for byte (after unescaping), as
	// gjson does. By default keys are matched under case folding, so that
	// "HEALTH_NOTES" is redacted like "health_notes".
	ExactCase bool
}

// Planner tells which sensitivity bits of a subject the caller may see.
type Planner interface {
	// Visible returns the mask of visible bits. subjectID is the raw JSON
	// scalar of the subject field (a string's decoded content or a number's
	// text), nil for bodies whose subject the caller decided. The slice is only
	// valid during the call. An error aborts the rewrite.
	Visible(subjectID []byte) (mask uint32, err error)
}

// PlannerFunc adapts a function to Planner.
type PlannerFunc func(subjectID []byte) (uint32, error)

// Visible calls f.
func (f PlannerFunc) Visible(subjectID []byte) (uint32, error) { return f(subjectID) }

// Fixed is a Planner that gives every subject the same mask.
type Fixed uint32

// Visible returns the fixed mask.
func (f Fixed) Visible([]byte) (uint32, error) { return uint32(f), nil }

// field is a compiled FieldSpec.
type field struct {
	path   string
	bit    uint32 // 1 << Bit
	action Action
	repl   []byte // replacement JSON text for ActNull and ActMask
	// short: repl is at most 8 bytes, replW holds them (zeros after), for
	// member's word stores.
	short bool
	replW uint64
	rank  int // position in Paths()
}

// node is one state of the matcher: the set of path positions a value of the
// document is at. The paths are compiled into a deterministic automaton, so
// that a key (or an array element) leads to exactly one node however many
// paths — literal, numeric or wildcard — it continues.
type node struct {
	byLen [][]child // literal keys by length (lower-cased unless exact case): one compare per key in practice
	slow  []child   // keys compared under Unicode case folding (non-ASCII mapped keys)
	// wild are the wildcard patterns of this state; wildTo[m] is the node for
	// a key matching exactly the patterns of bitmask m.
	wild   []string
	wildTo []*node
	rare   bool       // slow or wild is set: lookupRare has work on a miss
	elem   *node      // every array element without a more specific index
	idx    []idxChild // array elements by index, sorted; each includes elem's paths
	obj    bool       // object members can match
	arr    bool       // array elements can match
	// list: paths go through every element here (#) and name no key (the
	// key "#" and indexes aside): an object here is not the mapped shape.
	list bool

	fields  []int  // fields redacted here (several when paths overlap)
	one     *field // the field when there is exactly one (most nodes), for strongest
	bits    uint32 // OR of the fields' bits
	subject bool   // the subject id lives here
	scope   bool   // an element with its own subject (the node of the last "#")
	inner   bool   // some field lies below this node
	// noted are the RewriteMatched bits of fields (word, bit), so that
	// the rewriter notes them without looking the fields up.
	noted []notedBit
}

type notedBit struct {
	w int
	b uint64
}

type child struct {
	key string
	n   *node
}

type idxChild struct {
	i int
	n *node
}

// lookup finds the node for a decoded key; high says the key has a byte
// outside ASCII. Bucketing by length beats a map here: hashing every key of
// every object dominated the profile.
func (n *node) lookup(key []byte, high, fold bool) *node {
	if len(key) < len(n.byLen) && len(key) > 0 {
		// Most candidates differ in their first byte: two loads reject them.
		first := key[0]
		if fold {
			first = lower[first] // mapped keys are stored lower-cased
		}
		for _, c := range n.byLen[len(key)] {
			if c.key[0] == first && (string(key) == c.key || fold && eqFoldASCII(key, c.key)) {
				return c.n
			}
		}
	}
	if n.rare || high && fold {
		return n.lookupRare(key, high, fold)
	}
	return nil
}

// lookupRare handles Unicode case folding and wildcard patterns.
func (n *node) lookupRare(key []byte, high, fold bool) *node {
	if fold && (high || n.slow != nil) {
		// Case folding can relate keys of different lengths ("K", the
		// Kelvin sign, folds to "k"): compare against every literal.
		for _, c := range n.slow {
			if eqFold(key, c.key) {
				return c.n
			}
		}
		if high {
			for _, b := range n.byLen {
				for _, c := range b {
					if eqFold(key, c.key) {
						return c.n
					}
				}
			}
		}
	}
	if n.wild == nil {
		return nil
	}
	m := 0
	for i, p := range n.wild {
		if globMatch(p, string(key), fold) {
			m |= 1 << i
		}
	}
	return n.wildTo[m]
}

// element returns the node for array element i; next is the position in
// n.idx to look at (elements are visited in order).
func (n *node) element(i int, next *int) *node {
	if *next < len(n.idx) && n.idx[*next].i == i {
		c := n.idx[*next].n
		*next++
		return c
	}
	return n.elem
}

// Map is a compiled Spec. It is safe for concurrent use.
type Map struct {
	root       *node
	fields     []field
	sorted     []int // field indexes in path order, for Result.Redacted
	hashKey    []byte
	fold       bool
	subjectRel []seg // subject path below its scope
	perElement bool  // SubjectPath contains "#"
	hasSubject bool
	rootObj    bool // some path starts with a key
	rootArr    bool // some path starts with # or an index
	pool       pool
	// anyShape: containers of the other kind below the root pass instead of
	// ErrShape (the path-language tests compare selections on any shape).
	anyShape bool
}

// pnode is a node of the paths' trie before determinisation.
type pnode struct {
	id      int
	keys    map[litKey]*pnode
	keyText map[litKey]string // the key as written
	wild    []pedge
	elem    *pnode           // #: every element (and, as gjson reads it, the key "#")
	idx     map[int][]*pnode // by index; several when spelled differently ("1", "01")
	fields  []int
	subject bool
	scope   bool
}

// litKey is a literal key: canonical (folded unless exact case), and whether
// it was a plain number, which also indexes arrays (an escaped one does not).
type litKey struct {
	canon string
	index bool
}

type pedge struct {
	pattern string
	n       *pnode
}

type trie struct {
	fold  bool
	nodes []*pnode
}

func (t *trie) newNode() *pnode {
	n := &pnode{id: len(t.nodes)}
	t.nodes = append(t.nodes, n)
	return n
}

func (t *trie) canon(key string) string {
	if t.fold {
		return canonFold(key)
	}
	return key
}

// add walks (creating) the trie along segs and returns the last node.
func (t *trie) add(root *pnode, segs []seg) *pnode {
	n := root
	for _, s := range segs {
		switch s.kind {
		case segEach:
			if n.elem == nil {
				n.elem = t.newNode()
			}
			n = n.elem
		case segWild:
			var c *pnode
			for _, e := range n.wild {
				if e.pattern == s.key {
					c = e.n
				}
			}
			if c == nil {
				c = t.newNode()
				n.wild = append(n.wild, pedge{s.key, c})
			}
			n = c
		default:
			k := litKey{t.canon(s.key), s.idx >= 0}
			c := n.keys[k]
			if c == nil {
				c = t.newNode()
				if n.keys == nil {
					n.keys = map[litKey]*pnode{}
					n.keyText = map[litKey]string{}
				}
				n.keys[k], n.keyText[k] = c, s.key
				if s.idx >= 0 {
					if n.idx == nil {
						n.idx = map[int][]*pnode{}
					}
					n.idx[s.idx] = append(n.idx[s.idx], c)
				}
			}
			n = c
		}
	}
	return n
}

// maxStates bounds the automaton; wildcard patterns that overlap in many
// ways could otherwise make it grow exponentially.
const maxStates = 1 << 14

// maxWild bounds the wildcard patterns that can apply to one object.
const maxWild = 8

// builder determinises the trie: a node of the automaton is a set of trie
// nodes.
type builder struct {
	m     *Map
	fold  bool
	memo  map[string]*node
	count int
}

func (b *builder) state(set []*pnode) (*node, error) {
	if len(set) == 0 {
		return nil, nil
	}
	slices.SortFunc(set, func(x, y *pnode) int { return x.id - y.id })
	set = slices.CompactFunc(set, func(x, y *pnode) bool { return x == y })
	var key strings.Builder
	for _, p := range set {
		fmt.Fprintf(&key, "%d,", p.id)
	}
	if n, ok := b.memo[key.String()]; ok {
		return n, nil
	}
	if b.count++; b.count > maxStates {
		return nil, fmt.Errorf("the paths overlap in too many ways (more than %d matcher states); use fewer wildcards", maxStates)
	}
	n := &node{}
	b.memo[key.String()] = n
	for _, p := range set {
		for _, f := range p.fields {
			if !slices.Contains(n.fields, f) {
				n.fields = append(n.fields, f)
				n.bits |= b.m.fields[f].bit
			}
		}
		n.subject = n.subject || p.subject
		n.scope = n.scope || p.scope
	}
	slices.Sort(n.fields)
	if len(n.fields) == 1 {
		n.one = &b.m.fields[n.fields[0]] // m.fields is complete: the pointer stays valid
	}
	for _, f := range n.fields {
		k := b.m.fields[f].rank
		n.noted = append(n.noted, notedBit{k >> 6, 1 << (k & 63)})
	}

	// Object members: every literal key of the set, each also continuing
	// the patterns it matches; then the keys that only patterns match.
	type lit struct {
		text    string
		targets []*pnode
	}
	lits := map[string]*lit{}
	var order []string
	var pats []string
	patTargets := map[string][]*pnode{}
	addLit := func(canon, text string, c *pnode) {
		l := lits[canon]
		if l == nil {
			l = &lit{text: text}
			lits[canon] = l
			order = append(order, canon)
		}
		l.targets = append(l.targets, c)
	}
	for _, p := range set {
		for k, c := range p.keys {
			addLit(k.canon, p.keyText[k], c)
		}
		if p.elem != nil {
			// gjson reads # on an object as the key "#".
			addLit("#", "#", p.elem)
		}
		for _, e := range p.wild {
			if _, ok := patTargets[e.pattern]; !ok {
				pats = append(pats, e.pattern)
			}
			patTargets[e.pattern] = append(patTargets[e.pattern], e.n)
		}
	}
	slices.Sort(order)
	slices.Sort(pats)
	if len(pats) > maxWild {
		return nil, fmt.Errorf("more than %d wildcard patterns apply to one object; merge them", maxWild)
	}
	for _, k := range order {
		l := lits[k]
		targets := slices.Clone(l.targets)
		for _, pat := range pats {
			if globMatch(pat, l.text, b.fold) {
				targets = append(targets, patTargets[pat]...)
			}
		}
		c, err := b.state(targets)
		if err != nil {
			return nil, err
		}
		switch {
		case b.fold && !isASCII(l.text):
			n.slow = append(n.slow, child{l.text, c})
		case b.fold:
			n.addLen(strings.ToLower(l.text), c)
		default:
			n.addLen(l.text, c)
		}
	}
	if len(pats) > 0 {
		n.wild = pats
		n.wildTo = make([]*node, 1<<len(pats))
		for m := 1; m < len(n.wildTo); m++ {
			var targets []*pnode
			for i, pat := range pats {
				if m&(1<<i) != 0 {
					targets = append(targets, patTargets[pat]...)
				}
			}
			c, err := b.state(targets)
			if err != nil {
				return nil, err
			}
			n.wildTo[m] = c
		}
	}
	n.obj = len(order) > 0 || len(pats) > 0
	n.rare = n.slow != nil || n.wild != nil

	// Array elements: # and specific indices (which also continue #).
	var each []*pnode
	idx := map[int][]*pnode{}
	for _, p := range set {
		if p.elem != nil {
			each = append(each, p.elem)
		}
		for i, cs := range p.idx {
			idx[i] = append(idx[i], cs...)
		}
	}
	var err error
	if n.elem, err = b.state(slices.Clone(each)); err != nil {
		return nil, err
	}
	for _, i := range slices.Sorted(maps.Keys(idx)) {
		c, err := b.state(append(idx[i], each...))
		if err != nil {
			return nil, err
		}
		n.idx = append(n.idx, idxChild{i, c})
	}
	n.arr = n.elem != nil || n.idx != nil
	named := false
	for _, p := range set {
		named = named || len(p.wild) > 0
		for k := range p.keys {
			named = named || !k.index
		}
	}
	n.list = n.elem != nil && !named
	return n, nil
}

func (n *node) addLen(key string, c *node) {
	if len(key) >= len(n.byLen) {
		n.byLen = append(n.byLen, make([][]child, len(key)+1-len(n.byLen))...)
	}
	n.byLen[len(key)] = append(n.byLen[len(key)], child{key, c})
}

// markInner sets node.inner on every node with a field below it.
func markInner(n *node, done map[*node]bool) {
	if n == nil || done[n] {
		return
	}
	done[n] = true
	visit := func(c *node) {
		if c == nil {
			return
		}
		markInner(c, done)
		if len(c.fields) > 0 || c.inner {
			n.inner = true
		}
	}
	for _, b := range n.byLen {
		for _, c := range b {
			visit(c.n)
		}
	}
	for _, c := range n.slow {
		visit(c.n)
	}
	for _, c := range n.wildTo {
		visit(c)
	}
	visit(n.elem)
	for _, c := range n.idx {
		visit(c.n)
	}
}

// overlap reports whether two components can select a common member or
// element (wildcards against wildcards are assumed to).
func overlap(a, b seg, fold bool) bool {
	keyOf := func(s seg) (string, bool) { // the object key it reads, if literal
		if s.kind == segWild {
			return "", false
		}
		return s.key, true
	}
	ak, alit := keyOf(a)
	bk, blit := keyOf(b)
	switch {
	case alit && blit:
		if fold && canonFold(ak) == canonFold(bk) || ak == bk {
			return true
		}
	case alit:
		if globMatch(b.key, ak, fold) {
			return true
		}
	case blit:
		if globMatch(a.key, bk, fold) {
			return true
		}
	default:
		return true
	}
	// Array elements.
	switch {
	case a.kind == segEach && (b.kind == segEach || b.idx >= 0):
		return true
	case b.kind == segEach && a.idx >= 0:
		return true
	case a.idx >= 0 && a.idx == b.idx:
		return true
	}
	return false
}

// sameScope reports whether a field component stays inside the subject
// scope component s: the same literal key, #, or one index of #.
func sameScope(f, s seg, fold bool) bool {
	switch {
	case s.kind == segEach:
		return f.kind == segEach || f.kind == segKey && f.idx >= 0
	case f.kind != segKey || s.kind != segKey:
		return false
	case fold:
		return canonFold(f.key) == canonFold(s.key)
	default:
		return f.key == s.key
	}
}

// Compile validates spec and builds the matcher.
func Compile(spec Spec) (*Map, error) {
	m := &Map{hashKey: slices.Clone(spec.HashKey), fold: !spec.ExactCase}
	t := &trie{fold: m.fold}
	proot := t.newNode()
	var subj []seg
	var scope []seg // subject path components up to and including the last "#"
	if spec.SubjectPath != "" {
		p, err := ParsePath(spec.SubjectPath)
		if err != nil {
			return nil, fmt.Errorf("redact: subject path: %w", err)
		}
		if p.Wildcard() {
			return nil, fmt.Errorf("redact: subject path %q: a subject path names one value: no * or ?", spec.SubjectPath)
		}
		subj = p.segs
		last := -1
		for i, s := range subj {
			if s.kind == segEach {
				last = i
			}
		}
		m.hasSubject = true
		m.perElement = last >= 0
		scope = subj[:last+1]
		m.subjectRel = slices.Clone(subj[last+1:])
		for i, s := range m.subjectRel {
			if m.fold && isASCII(s.key) {
				m.subjectRel[i].key, m.subjectRel[i].lowered = strings.ToLower(s.key), true
			}
		}
		t.add(proot, subj).subject = true
		if m.perElement {
			t.add(proot, scope).scope = true
		}
		m.noteRoot(subj[0])
	}
	seen := make(map[string]bool, len(spec.Fields))
	for i, f := range spec.Fields {
		p, err := ParsePath(f.Path)
		if err != nil {
			return nil, fmt.Errorf("redact: field %d: %w", i, err)
		}
		segs := p.segs
		if f.Bit < 0 || f.Bit > MaxBit {
			return nil, fmt.Errorf("redact: field %q: bit %d out of 0..%d", f.Path, f.Bit, MaxBit)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("redact: field %q: duplicate path", f.Path)
		}
		seen[f.Path] = true
		if m.perElement {
			if len(segs) <= len(scope) {
				return nil, fmt.Errorf("redact: field %q is not under the subject's array %q: its subject would be unknown",
					f.Path, scopeString(spec.SubjectPath, len(scope)))
			}
			for j, s := range scope {
				if !sameScope(segs[j], s, m.fold) {
					return nil, fmt.Errorf("redact: field %q is not under the subject's array %q: its subject would be unknown",
						f.Path, scopeString(spec.SubjectPath, len(scope)))
				}
			}
		}
		if len(subj) > len(segs) {
			covers := true
			for j := range segs {
				covers = covers && overlap(segs[j], subj[j], m.fold)
			}
			if covers {
				// The subject is read from the input, but a redacted ancestor
				// would hide a second, conflicting subject id from the
				// duplicate check.
				return nil, fmt.Errorf("redact: field %q may contain the subject path %q; redact the subject field itself instead",
					f.Path, spec.SubjectPath)
			}
		}
		cf := field{path: f.Path, bit: 1 << uint(f.Bit), action: f.Action}
		switch f.Action {
		case ActNull:
			cf.repl = []byte("null")
		case ActRemove:
		case ActMask:
			mask := f.Mask
			if mask == "" {
				mask = DefaultMask
			}
			if !utf8.ValidString(mask) {
				return nil, fmt.Errorf("redact: field %q: mask is not valid UTF-8", f.Path)
			}
			cf.repl = appendQuoted(nil, mask)
		case ActHash:
			if len(spec.HashKey) == 0 {
				return nil, fmt.Errorf("redact: field %q: action hash needs Spec.HashKey", f.Path)
			}
		default:
			return nil, fmt.Errorf("redact: field %q: unknown action %d", f.Path, f.Action)
		}
		if (f.Action == ActNull || f.Action == ActMask) && len(cf.repl) <= 8 {
			var w [8]byte
			copy(w[:], cf.repl)
			cf.short, cf.replW = true, binary.LittleEndian.Uint64(w[:])
		}
		n := t.add(proot, segs)
		n.fields = append(n.fields, len(m.fields))
		m.fields = append(m.fields, cf)
		m.noteRoot(segs[0])
	}
	m.sorted = make([]int, len(m.fields))
	for i := range m.sorted {
		m.sorted[i] = i
	}
	slices.SortFunc(m.sorted, func(a, b int) int { return strings.Compare(m.fields[a].path, m.fields[b].path) })
	for r, f := range m.sorted {
		m.fields[f].rank = r
	}
	b := &builder{m: m, fold: m.fold, memo: map[string]*node{}}
	root, err := b.state([]*pnode{proot})
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	markInner(root, map[*node]bool{})
	m.root = root
	m.pool.m = m
	return m, nil
}

func (m *Map) noteRoot(s seg) {
	switch {
	case s.kind == segEach:
		m.rootArr = true
	case s.idx >= 0:
		m.rootArr, m.rootObj = true, true
	default:
		m.rootObj = true
	}
}

// scopeString is the subject path up to its last "#".
func scopeString(p string, n int) string {
	parts := strings.Split(p, ".")
	if n <= len(parts) {
		return strings.Join(parts[:n], ".")
	}
	return p
}

// Paths returns the mapped field paths, sorted.
func (m *Map) Paths() []string {
	out := make([]string, len(m.sorted))
	for i, f := range m.sorted {
		out[i] = m.fields[f].path
	}
	return out
}

// Root says which kinds of document root the paths can select in: an
// object (a path starts with a key) and an array (a path starts with # or
// an index). A body of the other kind would pass with nothing redacted, so
// callers refuse it.
func (m *Map) Root() (object, array bool) { return m.rootObj, m.rootArr }

// PerElement reports whether the subject path has a "#": every element of
// that array states its own subject.
func (m *Map) PerElement() bool { return m.perElement }

// MatchedWords is the length of the bit set RewriteMatched fills.
func (m *Map) MatchedWords() int { return (len(m.fields) + 63) / 64 }

// appendQuoted appends s as a JSON string literal.
func appendQuoted(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

func newHMAC(key []byte) hmacHash { return hmac.New(sha256.New, key) }
