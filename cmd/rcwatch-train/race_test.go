//go:build race

package main

// raceEnabled: the race detector makes a full refit take minutes.
const raceEnabled = true
