//go:build race

package cache_test

// churnRace: the race detector slows the churn test tenfold.
const churnRace = true
