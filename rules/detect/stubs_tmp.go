package detect

func VandalismScore(f Features) float64             { return 0 }
func VandalismReasons(f Features) []string          { return nil }
func (f *Features) SetText(added, removed []string) {}
