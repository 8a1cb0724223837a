package rules

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"crypto/sha1"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"

	"github.com/rcwatch/rcwatch/event"
)

// Case labels.
const (
	LabelVandalism = "vandalism"
	LabelGood      = "good"
)

// Case is one offline test case: a recentchange event, the enrichment that
// would otherwise be fetched (variables by their rule names, e.g.
// added_lines, user_editcount, user_warns), and an optional label. It is
// one JSON line in a cases file.
type Case struct {
	Event      json.RawMessage `json:"event"`
	Enrichment map[string]any  `json:"enrichment,omitempty"`
	Label      string          `json:"label,omitempty"` // LabelVandalism, LabelGood or ""
}

// maxCaseLine bounds one JSON line of a cases file (page texts can be large).
const maxCaseLine = 64 << 20

// ReadCases reads JSON lines of cases. Blank lines are skipped. A line that
// is not a case, has no event, or has an unknown label is an error naming the
// line.
func ReadCases(r io.Reader) ([]Case, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxCaseLine)
	var out []Case
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var c Case
		if err := json.Unmarshal(line, &c); err != nil {
			return nil, fmt.Errorf("reading case on line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(c.Event)) == 0 || bytes.Equal(bytes.TrimSpace(c.Event), []byte("null")) {
			return nil, fmt.Errorf("reading case on line %d: no event", n)
		}
		switch c.Label {
		case "", LabelVandalism, LabelGood:
		default:
			return nil, fmt.Errorf("reading case on line %d: unknown label %q (want %q or %q)", n, c.Label, LabelVandalism, LabelGood)
		}
		// Keep the event bytes independent of the scanner's buffer.
		c.Event = append(json.RawMessage(nil), c.Event...)
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading cases: %w", err)
	}
	return out, nil
}

// WriteCases writes cases as JSON lines.
func WriteCases(w io.Writer, cases []Case) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false) // wikitext is full of <ref>
	for i := range cases {
		if err := enc.Encode(&cases[i]); err != nil {
			return fmt.Errorf("encoding case %d: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing cases: %w", err)
	}
	return nil
}

// clueBotBadDiff is what the ClueBot NG export holds in added_lines and
// deleted_lines when it could not fetch the diff.
const clueBotBadDiff = "BAD REQUEST"

// clueBotNamespaces maps the ClueBot NG namespace names to numbers and
// canonical prefixes (enwiki).
var clueBotNamespaces = map[string]struct {
	id     int
	prefix string
}{
	"main": {0, ""}, "talk": {1, "Talk"}, "user": {2, "User"}, "user talk": {3, "User talk"},
	"wikipedia": {4, "Wikipedia"}, "wikipedia talk": {5, "Wikipedia talk"}, "file": {6, "File"},
	"file talk": {7, "File talk"}, "mediawiki": {8, "MediaWiki"}, "mediawiki talk": {9, "MediaWiki talk"},
	"template": {10, "Template"}, "template talk": {11, "Template talk"}, "help": {12, "Help"},
	"help talk": {13, "Help talk"}, "category": {14, "Category"}, "category talk": {15, "Category talk"},
	"portal": {100, "Portal"}, "portal talk": {101, "Portal talk"},
}

// CasesFromClueBot converts the labelled ClueBot NG edit table (the CSV
// export of the "random-edits" dataset: one row per enwiki edit with
// added_lines, deleted_lines, user statistics and isvandalism) to cases.
//
// Each row becomes a synthetic recentchange edit event on enwiki
// (revision.new = EditID, meta.id derived from EditID, meta.dt and timestamp
// from current_timestamp) and an enrichment map with what was known when the
// edit was made: added_lines, removed_lines, user_age (seconds; 0 for IPs, as
// AbuseFilter), page_age (seconds) and edit_delta. The export's user
// statistics were taken years after the edits and are left out (see
// testdata/fixtures/PROVENANCE.md §5); an empty cell is unknown. The export has no
// page texts (the previous/current columns are empty), so the event carries
// no length and old_wikitext/new_wikitext are absent; edit_delta is the byte
// size of the added minus the removed lines. Rows whose diff the export could
// not fetch ("BAD REQUEST") get no added_lines/removed_lines/edit_delta.
func CasesFromClueBot(r io.Reader) ([]Case, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading ClueBot NG header: %w", err)
	}
	col := make(map[string]int, len(header))
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"EditID", "title", "namespace", "user", "comment", "current_timestamp",
		"added_lines", "deleted_lines", "isvandalism", "user_reg_time"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("reading ClueBot NG table: missing column %q", need)
		}
	}
	var out []Case
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading ClueBot NG table: %w", err)
		}
		line, _ := cr.FieldPos(0)
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return rec[i]
			}
			return ""
		}
		c, err := clueBotCase(get)
		if err != nil {
			return nil, fmt.Errorf("converting ClueBot NG row on line %d: %w", line, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// clueBotEvent is the synthetic recentchange event of one ClueBot NG row.
type clueBotEvent struct {
	Schema           string       `json:"$schema"`
	Meta             clueBotMeta  `json:"meta"`
	Type             string       `json:"type"`
	Namespace        int          `json:"namespace"`
	Title            string       `json:"title"`
	TitleURL         string       `json:"title_url"`
	Comment          string       `json:"comment"`
	Timestamp        int64        `json:"timestamp"`
	User             string       `json:"user"`
	Bot              bool         `json:"bot"`
	Minor            bool         `json:"minor"`
	Revision         clueBotRevID `json:"revision"`
	ServerURL        string       `json:"server_url"`
	ServerName       string       `json:"server_name"`
	ServerScriptPath string       `json:"server_script_path"`
	Wiki             string       `json:"wiki"`
}

type clueBotMeta struct {
	URI    string `json:"uri"`
	ID     string `json:"id"`
	DT     string `json:"dt"`
	Domain string `json:"domain"`
	Stream string `json:"stream"`
}

type clueBotRevID struct {
	New int64 `json:"new"`
}

func clueBotCase(get func(string) string) (Case, error) {
	editID, err := strconv.ParseInt(strings.TrimSpace(get("EditID")), 10, 64)
	if err != nil {
		return Case{}, fmt.Errorf("EditID: %w", err)
	}
	ts, err := strconv.ParseInt(strings.TrimSpace(get("current_timestamp")), 10, 64)
	if err != nil {
		return Case{}, fmt.Errorf("current_timestamp: %w", err)
	}
	nsName := strings.ToLower(strings.TrimSpace(get("namespace")))
	ns, ok := clueBotNamespaces[nsName]
	if !ok {
		return Case{}, fmt.Errorf("unknown namespace %q", nsName)
	}
	title := strings.ReplaceAll(get("title"), "_", " ")
	if ns.prefix != "" {
		title = ns.prefix + ":" + title
	}
	user := get("user")
	dt := time.Unix(ts, 0).UTC()
	pageURL := "https://en.wikipedia.org/wiki/" + strings.ReplaceAll(title, " ", "_")
	ev := clueBotEvent{
		Schema: "/mediawiki/recentchange/1.0.0",
		Meta: clueBotMeta{
			URI: pageURL, ID: clueBotMetaID(editID), DT: dt.Format(time.RFC3339),
			Domain: "en.wikipedia.org", Stream: "mediawiki.recentchange",
		},
		Type: "edit", Namespace: ns.id, Title: title, TitleURL: pageURL,
		Comment: get("comment"), Timestamp: ts, User: user,
		Minor:            strings.EqualFold(strings.TrimSpace(get("current_minor")), "true"),
		Revision:         clueBotRevID{New: editID},
		ServerURL:        "https://en.wikipedia.org",
		ServerName:       "en.wikipedia.org",
		ServerScriptPath: "/w",
		Wiki:             "enwiki",
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return Case{}, fmt.Errorf("encoding event: %w", err)
	}

	enr := map[string]any{}
	added, removed := get("added_lines"), get("deleted_lines")
	if added != clueBotBadDiff || removed != clueBotBadDiff {
		al, rl := splitLines(added), splitLines(removed)
		enr["added_lines"] = al
		enr["removed_lines"] = rl
		enr["edit_delta"] = linesSize(al) - linesSize(rl)
	}
	// Only what was known when the edit was made. The export's user
	// statistics (user_edit_count, user_warns, user_distinct_pages) were
	// taken years later, num_recent_reversions is 0 in every row and
	// num_recent_edits is not bounded by the edit's time: they are not
	// converted. An empty cell is unknown and sets nothing.
	switch event.UserType(user) {
	case "ip", "temp":
		// AbuseFilter's user_age is 0 for IPs; ClueBot records the edit's
		// own time instead.
		enr["user_age"] = int64(0)
	default:
		if reg, ok := clueBotTime(get("user_reg_time")); ok {
			enr["user_age"] = max(0, ts-reg)
		}
	}
	if made, ok := clueBotTime(get("page_made_time")); ok {
		enr["page_age"] = max(0, ts-made)
	}

	label := LabelGood
	switch strings.ToLower(strings.TrimSpace(get("isvandalism"))) {
	case "true", "1":
		label = LabelVandalism
	case "false", "0":
	default:
		return Case{}, fmt.Errorf("isvandalism: %q is not a boolean", get("isvandalism"))
	}
	return Case{Event: raw, Enrichment: enr, Label: label}, nil
}

// clueBotMetaID is a stable UUID-shaped meta.id for a ClueBot NG edit, so
// re-running the converter yields the same alert ids.
func clueBotMetaID(editID int64) string { return caseMetaID("cluebotng", editID) }

// caseMetaID is a name-based UUID (v5, SHA-1) of source:enwiki:revid.
func caseMetaID(source string, revID int64) string {
	h := sha1.Sum([]byte(source + ":enwiki:" + strconv.FormatInt(revID, 10)))
	h[6] = h[6]&0x0f | 0x50 // version 5 (name-based, SHA-1)
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// clueBotTime parses the two time formats of the export: Unix seconds and
// MediaWiki timestamps (YYYYMMDDHHMMSS).
func clueBotTime(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 14 {
		if t, err := time.Parse("20060102150405", s); err == nil {
			return t.Unix(), true
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return n, true
	}
	return 0, false
}

func splitLines(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
}

// linesSize is the byte size the lines take in a page, newlines included.
func linesSize(lines []string) int64 {
	var n int64
	for _, l := range lines {
		n += int64(len(l)) + 1
	}
	return n
}

// oresColumns are the columns of ORES's "reverted" demo feature files
// (wikimedia/editquality datasets/demo/enwiki.features_reverted.*.tsv), in
// order, with the rule variable each one becomes.
var oresColumns = []string{"rev_id", "longest_repeated_char_added", "words_added", "words_removed",
	"badwords_prop_delta", "informals_prop_delta", "non_stopword_prop_delta",
	"is_anon", "in_group_bot_sysop", "seconds_since_registration", "reverted"}

// CasesFromORES converts ORES's edit-time feature file (tab-separated, no
// header: rev_id, the nine features of the "reverted" model, and the label
// reverted True/False; bzip2-compressed input is recognised) to cases: label
// vandalism for a reverted edit, good otherwise.
//
// The file has no text, title, user name or time. Each row becomes a
// synthetic enwiki article edit (revision.new = rev_id, meta.id derived from
// it) whose enrichment holds the features under the variables the rules and
// the score use: longest_repeated_char_added, words_added, words_removed,
// badwords_prop_delta, informals_prop_delta, non_stopword_prop_delta,
// user_type ("ip" or "named"), user_bot_or_sysop and user_age (seconds since
// registration; 0 for IPs, as AbuseFilter, where the file holds the time
// since 2006-01-01).
func CasesFromORES(r io.Reader) ([]Case, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, err := br.Peek(3); err == nil && string(magic) == "BZh" {
		br = bufio.NewReaderSize(bzip2.NewReader(br), 64<<10)
	}
	sc := bufio.NewScanner(br)
	var out []Case
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		c, err := oresCase(strings.Split(line, "\t"))
		if err != nil {
			return nil, fmt.Errorf("converting ORES row on line %d: %w", n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading ORES features: %w", err)
	}
	return out, nil
}

func oresCase(f []string) (Case, error) {
	if len(f) != len(oresColumns) {
		return Case{}, fmt.Errorf("%d columns, want %d (%s)", len(f), len(oresColumns), strings.Join(oresColumns, ", "))
	}
	revID, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return Case{}, fmt.Errorf("rev_id: %w", err)
	}
	num := make([]float64, len(f))
	for i := 1; i <= 6; i++ {
		if num[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return Case{}, fmt.Errorf("%s: %w", oresColumns[i], err)
		}
	}
	if num[9], err = strconv.ParseFloat(f[9], 64); err != nil {
		return Case{}, fmt.Errorf("%s: %w", oresColumns[9], err)
	}
	flag := func(i int) (bool, error) {
		b, err := strconv.ParseBool(f[i])
		if err != nil {
			return false, fmt.Errorf("%s: %w", oresColumns[i], err)
		}
		return b, nil
	}
	anon, err := flag(7)
	if err != nil {
		return Case{}, err
	}
	group, err := flag(8)
	if err != nil {
		return Case{}, err
	}
	reverted, err := flag(10)
	if err != nil {
		return Case{}, err
	}
	ev := clueBotEvent{
		Schema: "/mediawiki/recentchange/1.0.0",
		Meta: clueBotMeta{URI: "https://en.wikipedia.org/w/index.php?oldid=" + f[0], ID: caseMetaID("ores", revID),
			Domain: "en.wikipedia.org", Stream: "mediawiki.recentchange"},
		Type: "edit", Revision: clueBotRevID{New: revID},
		ServerURL: "https://en.wikipedia.org", ServerName: "en.wikipedia.org", ServerScriptPath: "/w", Wiki: "enwiki",
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return Case{}, fmt.Errorf("encoding event: %w", err)
	}
	enr := map[string]any{
		"longest_repeated_char_added": int64(num[1]), "words_added": int64(num[2]), "words_removed": int64(num[3]),
		"badwords_prop_delta": num[4], "informals_prop_delta": num[5], "non_stopword_prop_delta": num[6],
		"user_bot_or_sysop": group,
	}
	if anon {
		enr["user_type"], enr["user_age"] = "ip", int64(0)
	} else {
		enr["user_type"], enr["user_age"] = "named", int64(num[9])
	}
	label := LabelGood
	if reverted {
		label = LabelVandalism
	}
	return Case{Event: raw, Enrichment: enr, Label: label}, nil
}
