package redisstore

import (
	"encoding/binary"
	"strconv"

	"github.com/gdprgate/gdprgate/policy/model"
)

// Layout version 2: subjects sharded over numTags hash tags.
const (
	layoutVersion = "2"
	// numTags is the number of shard tags. Every subject belongs to one;
	// a Redis Cluster spreads the tags over its masters (256 tags keep
	// masters within a few percent of each other up to dozens of masters).
	numTags = 256
	// globalStream numbers the global audit stream after the tags'.
	globalStream = numTags
	// defaultBuckets is the number of subject buckets per tag when a store
	// is created: sized for about 10 million subjects (≈76 per bucket, a
	// compact listpack hash). See the package doc for re-bucketing.
	defaultBuckets = 512
	// maxInline is the largest record kept inside its bucket: Redis keeps
	// a hash compact (listpack) only while every value is at most 64 bytes
	// (hash-max-listpack-value). A larger record moves to its own key.
	maxInline = 64
)

// tagNames are the hash tags' contents: tag i hashes to cluster slot
// 64*i+32, so a cluster whose masters own contiguous, even slot ranges (what
// `redis-cli --cluster create` and most operators do) holds the same number
// of tags on each master. TestTagNamesLandOnEvenlySpacedSlots checks it.
var tagNames = [numTags]string{
	"e8a", "4zp", "aio", "8fn", "21g", "csv", "cj9", "z1", "1d8", "5hq", "556", "90g", "3gn", "baw", "7rh", "f0y",
	"m59", "a0h", "id7", "eaf", "o6o", "69n", "cny", "gb0", "lc0", "5l1", "51v", "1y7", "wkn", "7og", "b8p", "3za",
	"4z4", "mu5", "eeb", "13a0", "6yb", "o2k", "zu", "kce", "5h5", "9md", "d3k", "55r", "7kc", "fmz", "ft5", "j5l",
	"i94", "f", "8bj", "amk", "c3z", "gz", "gbt", "6dm", "5lu", "djl", "1ys", "512", "bes", "3cj", "fpu", "72d",
	"emk", "4kr", "465", "83d", "6t", "cbt", "65c", "k3", "112", "5ys", "hct", "1lu", "32d", "bpu", "7cj", "fes",
	"8jc", "4o2", "42u", "e4l", "24", "6ld", "k2k", "os", "15r", "qus", "hg4", "1h5", "n5l", "bt5", "bmz", "3kc",
	"4k6", "8ng", "e0h", "46q", "cb0", "60", "kw", "k6o", "5y7", "11v", "1l1", "hc0", "7za", "f8p", "3og", "skn",
	"4ov", "eio", "8sh", "421", "cfp", "2p", "o7", "61g", "qu7", "156", "1hq", "5d8", "b0y", "3rh", "faw", "7gn",
	"bn", "6x6", "6ay", "2m0", "e9q", "a58", "iag", "ed6", "ne6", "7j7", "77p", "f1i", "9l0", "5ia", "h7n", "18o",
	"247", "rt6", "6e9", "2ip", "8zq", "a1x", "4fo", "min", "fhn", "7nw", "730", "nx9", "1ah", "hni", "50f", "957",
	"6xr", "203", "2mt", "ckm", "aqt", "e95", "edr", "4bk", "7js", "flj", "n85", "774", "hjm", "1el", "913", "54b",
	"c2j", "fj", "2i4", "kf5", "au4", "8z5", "8cz", "iec", "7n3", "3bz", "f5m", "73t", "5me", "9h4", "1xc", "h3j",
	"7d", "6i4", "64s", "g2j", "8o3", "4jb", "i4m", "82t", "33t", "b5m", "7bz", "3n3", "l3j", "5xc", "hbd", "1me",
	"gkm", "6mt", "603", "nc", "8ks", "adr", "43e", "864", "374", "j85", "blj", "3js", "14b", "q0k", "5el", "dcu",
	"6ip", "2e9", "jg", "647", "iin", "8ow", "820", "47a", "jx9", "330", "3nw", "bhn", "q4o", "10f", "9d9", "5ah",
	"6m0", "wh", "2x6", "60w", "4nf", "8k7", "86p", "a9q", "b1i", "37p", "3j7", "je6", "58o", "9y6", "1ia", "qmh",
}

// tagPrefix[i] is "gdprgate:{<tag i>}:", the start of every key of tag i.
var tagPrefix = func() [numTags]string {
	var p [numTags]string
	for i, n := range tagNames {
		p[i] = "gdprgate:{" + n + "}:"
	}
	return p
}()

// Global keys: small, versioned or rarely written, cached by every sidecar.
const (
	gp           = "gdprgate:{g}:"
	keyRegisters = gp + "registers"
	keyRecompute = gp + "recompute"
	keyLayout    = gp + "layout" // hash: version, buckets
	keySymbols   = gp + "sym"    // hash: "n\x00<kind>\x00<name>" → code, "c<code>" → name, "next"
	keyGMeta     = gp + "meta"   // hash: epoch
	keyGAudit    = gp + "audit"
	keyWipes     = gp + "wipes"
	keyQueue     = gp + "wipeq"
	keyHeld      = gp + "held"
	keyGuard     = gp + "guard"
	channel      = "gdprgate:invalidate"
	group        = "workers"
)

func keyWipe(id string) string    { return gp + "wipe:" + id }
func keyLease(name string) string { return gp + "lease:" + name }

// Keys of layout version 1 (everything under {g}); New refuses a store
// that still has them, migrate reads them.
const (
	v1Registers = gp + "registers" // same key in both layouts
	v1Epoch     = gp + "epoch"
	v1EvKey     = gp + "evkey"
	v1Due       = gp + "due"
)

// Per-tag keys.
func keyMeta(t int) string      { return tagPrefix[t] + "meta" } // hash: epoch, duemark, n
func keyDue(t int) string       { return tagPrefix[t] + "due" }  // zset: bucket → lowest due score in it
func keyAudit(t int) string     { return tagPrefix[t] + "audit" }
func keyEvCount(t int) string   { return tagPrefix[t] + "evcount" }
func keyBucket(t, b int) string { return tagPrefix[t] + "b:" + strconv.Itoa(b) }
func keyIndex(t, b int) string  { return tagPrefix[t] + "k:" + strconv.Itoa(b) }
func keyOverflow(t int, member string) string {
	return tagPrefix[t] + "o:" + member
}

// placement is where a hashed thing lives: its tag and bucket.
type placement struct{ tag, bucket int }

// hashParts is FNV-1a 64 over the parts with a separator that no part of a
// hashed name can make ambiguous (each part is length-prefixed).
// It is written out rather than through hash/fnv: an import places every
// subject, and the hash.Hash interface and the []byte conversions cost more
// than the hashing (TestHashPartsIsFNV1a checks both agree).
func hashParts(parts ...string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		for _, c := range n[:binary.PutUvarint(n[:], uint64(len(p)))] {
			h = (h ^ uint64(c)) * prime
		}
		for i := 0; i < len(p); i++ {
			h = (h ^ uint64(p[i])) * prime
		}
	}
	return h
}

func place(h uint64, buckets int) placement {
	return placement{tag: int(h % numTags), bucket: int((h / numTags) % uint64(buckets))}
}

// subjectPlace is where a subject's record lives. It depends on the
// subject's names only (never on store-local symbol codes), so every store
// of the same layout agrees.
func subjectPlace(ref model.SubjectRef, buckets int) placement {
	return place(hashParts(ref.Entity, ref.ID), buckets)
}

// keyPlace is where an evidence key's index entry lives.
func keyPlace(legalisation, key string, buckets int) placement {
	return place(hashParts("k", legalisation, key), buckets)
}

// crc16 is Redis Cluster's key hash (CRC16-CCITT, XMODEM).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slotOf is the cluster slot of a key (its hash tag's, when it has one).
func slotOf(key string) int {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					return int(crc16([]byte(key)) % 16384)
				}
			}
			break
		}
	}
	return int(crc16([]byte(key)) % 16384)
}
