//go:build race

package rules

// raceEnabled: the race detector makes the data-file checks take minutes;
// they test no concurrency.
const raceEnabled = true
