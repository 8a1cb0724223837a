// Package detect holds the built-in detectors that rule authors call from
// rule expressions: AbuseFilter-style text normalisation (ccnorm, norm,
// specialratio, rcount), vandalism signals on added and removed text
// (profanity, nonsense, repeated characters, shouting, links, reference
// removal), the combined vandalism score, and the outdated-citation report.
//
// Every function here is pure: no I/O, no clock (time is an argument), no
// package-level mutable state. They are safe for concurrent use.
package detect

// Features is every numeric input of VandalismScore. The zero value of a
// field means "none" or "unknown" (AbuseFilter gives 0 for unknown user
// statistics too). Text signals are usually filled with SetText.
type Features struct {
	// Sizes, in bytes, as the recentchange event reports them.
	OldSize   int64
	NewSize   int64
	EditDelta int64 // NewSize - OldSize

	// The performer.
	UserType            string  // "ip", "temp", "named" (event.UserType)
	UserEditCount       int64   // edits before this one
	UserAge             float64 // seconds since registration; 0 if unknown or IP
	UserGroups          []string
	UserWarns           int64 // warnings on the user's talk page
	UserDistinctPages   int64 // distinct pages the user edited
	NumRecentEdits      int64 // recent edits to the page
	NumRecentReversions int64 // recent reverts on the page
	Bot                 bool

	// The page.
	PageAge   float64 // seconds since the page was created; 0 if unknown
	Namespace int
	Minor     bool
	Summary   string // edit summary

	// Text signals from the added and removed lines (SetText fills them).
	AddedChars       int     // runes in the added lines
	RemovedChars     int     // runes in the removed lines
	Profanity        int     // bad-word hits in the inserted text
	ProfanityRemoved int     // bad-word hits in the deleted text
	Nonsense         float64 // 0..1 gibberish score of the added text
	Shouting         float64 // share of upper-case letters in added words
	RepeatedChars    int     // runs of ≥ 5 of one character in added text
	RefsRemoved      int     // <ref> tags removed, net
	LinksAdded       int     // URLs in added lines not in removed lines
	Blanking         bool    // the page was (nearly) emptied
	InsertedWords    int     // words the edit inserts (added minus removed, as a multiset)
	Informal         int     // inserted first/second-person, chat or praise words, and "!"
	MarkupAdded      int     // inserted reference, template and link markup tokens
	SmallFix         bool    // only numbers or respellings of removed words inserted (≤ 3 words)
	TestEdit         bool    // the editing toolbar's placeholder text was saved ('''Bold text''')
	ProseShare       float64 // share of added lines that are prose (not lists, tables, templates)

	// What is known. The model treats an input it cannot know as missing,
	// not as zero: an offline case from the ORES set has its nine features
	// but no text, and an edit whose diff could not be fetched has no text.
	TextKnown  bool // the added and removed lines are known (SetText was given them)
	ORESKnown  bool // ORES holds the edit's ORES text features
	UserKnown  bool // the user's groups and registration were fetched (always true for IPs)
	BotOrSysop bool // the user is in the bot or sysop group (ORES's in_group({'bot','sysop'}))

	// ORES is the text half of ORES's edit-time feature set (ores.go).
	ORES ORES
}

// CitationReport counts outdated or weak citations in a page's wikitext.
type CitationReport struct {
	// StaleAccessDates: {{cite …}} templates whose access-date is older than
	// maxAge and that have no archive-url.
	StaleAccessDates int
	// DeadNoArchive: url-status=dead or {{dead link}} without archive-url.
	DeadNoArchive int
	// BareURLs: <ref>http…</ref> or [http://…] with no title.
	BareURLs int
}
