package detect

import "time"

func CCNorm(s string) string                  { return s }
func Norm(s string) string                    { return s }
func SpecialRatio(s string) float64           { return 0 }
func RCount(pattern, s string) int            { return 0 }
func Profanity(text string) int               { return 0 }
func Nonsense(text string) float64            { return 0 }
func RepeatedChars(text string) int           { return 0 }
func ShoutingRatio(text string) float64       { return 0 }
func Links(lines []string) []string           { return nil }
func RefsRemoved(removed, added []string) int { return 0 }
func VandalismScore(f Features) float64       { return 0 }
func VandalismReasons(f Features) []string    { return nil }
func Citations(text string, now time.Time, maxAge time.Duration) CitationReport {
	return CitationReport{}
}
func (f *Features) SetText(added, removed []string) {}
