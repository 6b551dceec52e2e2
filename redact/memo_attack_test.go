package redact

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// attackKeys are the keys the random bodies are made of: mapped ones, their
// other-case spellings, prefixes and extensions of them, keys at the memo's
// 15/16-byte edge, escaped spellings and keys outside ASCII.
var attackKeys = []string{
	"a", "b", "ab", "email", "Email", "emai", "emaill", "id", "x", "y",
	"kkkkkkkkkkkkkkz", "kkkkkkkkkkkkkkkz", "kkkkkkkkkkkkkk", "kkkkkkkkkkkkkkkk",
	`em\u0061il`, "\u212a", "K", "k", "contact_a", "contact_bb", "d", "",
	"nest", "deep",
}

var attackSpecs = []Spec{
	{Fields: []FieldSpec{
		{Path: "data.#.email", Bit: 1}, {Path: "data.#.a.b", Bit: 2, Action: ActHash},
		{Path: "data.#.contact_*.x", Bit: 3, Action: ActRemove}, {Path: "data.#.k", Bit: 0, Action: ActMask},
		{Path: "data.#.kkkkkkkkkkkkkkz", Bit: 1, Action: ActRemove},
		{Path: "data.#.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.email", Bit: 2},
		{Path: "data.#.deep.#.email", Bit: 3},
	}, SubjectPath: "data.#.id", HashKey: testKey},
	{Fields: []FieldSpec{
		{Path: "data.#.email", Bit: 1}, {Path: "data.#.a.b", Bit: 2, Action: ActHash},
		{Path: "data.#.contact_*.x", Bit: 3, Action: ActRemove}, {Path: "data.#.k", Bit: 0, Action: ActMask},
		{Path: "data.#.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.nest.email", Bit: 2},
	}, SubjectPath: "data.#.id", HashKey: testKey, ExactCase: true},
	{Fields: []FieldSpec{{Path: "email", Bit: 1}, {Path: "a.email", Bit: 2}, {Path: "*.a", Bit: 0}}, HashKey: testKey},
}

func attackValue(rng *rand.Rand, sb *strings.Builder, depth int) {
	switch k := rng.IntN(10); {
	case depth < 22 && k < 3:
		attackObject(rng, sb, depth+1)
	case depth < 22 && k < 4:
		sb.WriteByte('[')
		for i, n := 0, rng.IntN(4); i < n; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			attackValue(rng, sb, depth+1)
		}
		sb.WriteByte(']')
	case k < 7:
		sb.WriteString(`"v"`)
	default:
		sb.WriteString("12")
	}
}

func attackObject(rng *rand.Rand, sb *strings.Builder, depth int) {
	sb.WriteByte('{')
	n := rng.IntN(4)
	big := rng.IntN(20) == 0
	if big {
		n = 60 + rng.IntN(10)
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('"')
		sb.WriteString(attackKeys[rng.IntN(len(attackKeys))])
		sb.WriteString(`":`)
		if big {
			sb.WriteString("1")
			continue
		}
		attackValue(rng, sb, depth)
	}
	sb.WriteByte('}')
}

// TestKeyMemoRandomBodies: random bodies of repeated, prefixed, re-cased
// and escaped keys at every depth up to 22, objects of more than memoKeys
// keys, rewrite as without the memo, buffered and streamed in random cuts.
func TestKeyMemoRandomBodies(t *testing.T) {
	var maps []*Map
	for _, s := range attackSpecs {
		m, err := Compile(s)
		if err != nil {
			t.Fatal(err)
		}
		maps = append(maps, m)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	runs := 4000
	if raceEnabled {
		runs = 400 // ten times slower; nothing here is concurrent
	}
	for it := 0; it < runs; it++ {
		var sb strings.Builder
		sb.WriteString(`{"data":[`)
		for i, n := 0, 1+rng.IntN(6); i < n; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			if rng.IntN(3) == 0 {
				sb.WriteString(`{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":{"nest":`)
				attackObject(rng, &sb, 18)
				sb.WriteString(`}}}}}}}}}}}}}}}}},"id":"i1"}`)
				continue
			}
			attackObject(rng, &sb, 2)
		}
		sb.WriteString(`],"email":1,"a":{"email":2,"a":3}}`)
		body := []byte(sb.String())
		if len(body) > 1<<16 {
			continue
		}
		assertMemoIsInvisible(t, maps, body, uint32(it))
		for _, m := range maps {
			if _, err := m.NewStream(nil, StreamOptions{}); err != nil {
				continue
			}
			var cuts []int
			for c := rng.IntN(20); c < len(body); c += 1 + rng.IntN(40) {
				cuts = append(cuts, c)
			}
			checkStream(t, m, streamPlanner{mask: uint32(it)}, body, cuts)
		}
	}
}
