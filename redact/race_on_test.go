//go:build race

package redact

// raceEnabled: the race detector makes sync.Pool drop objects at random, so
// allocation counts are not meaningful under -race.
const raceEnabled = true
