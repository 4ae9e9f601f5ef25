//go:build e2e && race

package e2e

// raceEnabled makes TestMain build the peer binary with -race too, so data races
// inside the server processes are reported (and make them exit non-zero) when
// the e2e tests themselves run under -race.
const raceEnabled = true
