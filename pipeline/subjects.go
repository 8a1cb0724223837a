package pipeline

import "slices"

// AlertFilterWiki is the filter subject of the alerts of one wiki
// (alert.<wiki>.>), for a consumer that takes only some wikis.
func AlertFilterWiki(wiki string) string { return "alert." + SubjectToken(wiki) + ".>" }

// AlertFilterWikis returns the filter subjects of the alerts of wikis (nil
// when wikis is empty: every alert), sorted and without duplicates.
func AlertFilterWikis(wikis []string) []string {
	if len(wikis) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, w := range wikis {
		if f := AlertFilterWiki(w); !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}
