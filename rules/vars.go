package rules

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/rules/detect"
)

// Vars is the environment every rule expression is type-checked against and
// evaluated on. Names follow AbuseFilter where one exists; every
// recentchange field is here too; the detector outputs are computed only
// when a rule being evaluated references them.
//
// Which variables need enrichment (a fetch from the wiki) is in varNeeds;
// docs/RULES.md lists them all.
type Vars struct {
	meter *costMeter // the cost bound of the run (funcs.go); not a rule variable

	// AbuseFilter names.
	UserName          string   `expr:"user_name"`
	UserEditCount     int64    `expr:"user_editcount"` // needs user info
	UserAge           int64    `expr:"user_age"`       // seconds since registration at the edit; needs user info
	UserGroups        []string `expr:"user_groups"`    // needs user info
	UserType          string   `expr:"user_type"`      // ip, temp, named ("" if redacted)
	PageTitle         string   `expr:"page_title"`     // without namespace prefix
	PageNamespace     int      `expr:"page_namespace"`
	PagePrefixedTitle string   `expr:"page_prefixedtitle"`
	Summary           string   `expr:"summary"`
	OldSize           int64    `expr:"old_size"`
	NewSize           int64    `expr:"new_size"`
	EditDelta         int64    `expr:"edit_delta"`
	AddedLines        []string `expr:"added_lines"`   // needs the diff
	RemovedLines      []string `expr:"removed_lines"` // needs the diff
	AddedLinks        []string `expr:"added_links"`   // needs the diff
	RemovedLinks      []string `expr:"removed_links"` // needs the diff
	OldWikitext       string   `expr:"old_wikitext"`  // needs wikitext
	NewWikitext       string   `expr:"new_wikitext"`  // needs wikitext
	Action            string   `expr:"action"`        // edit, createaccount, delete, move, upload, … (AbuseFilter)
	Timestamp         int64    `expr:"timestamp"`     // unix seconds
	Wiki              string   `expr:"wiki"`

	// ORES's edit-time features (rules/detect ores.go): computed from the
	// diff when referenced; an offline case from the ORES set gives them.
	LongestRepeatedCharAdded int     `expr:"longest_repeated_char_added"`
	WordsAdded               int     `expr:"words_added"`
	WordsRemoved             int     `expr:"words_removed"`
	BadwordsPropDelta        float64 `expr:"badwords_prop_delta"`
	InformalsPropDelta       float64 `expr:"informals_prop_delta"`
	NonStopwordPropDelta     float64 `expr:"non_stopword_prop_delta"`
	UserBotOrSysop           bool    `expr:"user_bot_or_sysop"` // in the bot or sysop group; needs user info

	// What this evaluation knows (not rule variables): the model treats
	// what is not known as missing rather than as zero.
	oresSet, diffKnown, userKnown bool

	// Edit-time context. Live the enricher fills user_warns,
	// user_warn_level, num_recent_reversions and page_age with the user
	// info, as they were before the edit; user_distinct_pages and
	// num_recent_edits only offline cases carry. The vandalism score uses
	// page_age only: the ClueBot NG export's user statistics were taken
	// years after the edits, so no training data has the others at edit time.
	UserWarns           int64 `expr:"user_warns"`
	UserWarnLevel       int64 `expr:"user_warn_level"` // highest uw- level (1–4) on the talk page before the edit
	UserDistinctPages   int64 `expr:"user_distinct_pages"`
	NumRecentEdits      int64 `expr:"num_recent_edits"`
	NumRecentReversions int64 `expr:"num_recent_reversions"`
	PageAge             int64 `expr:"page_age"` // seconds

	// The recentchange event's own fields.
	Type             string `expr:"type"` // edit, new, log, categorize, external
	RCID             int64  `expr:"rc_id"`
	Title            string `expr:"title"`
	Namespace        int    `expr:"namespace"`
	Comment          string `expr:"comment"`
	ParsedComment    string `expr:"parsedcomment"`
	User             string `expr:"user"`
	Bot              bool   `expr:"bot"`
	Minor            bool   `expr:"minor"`
	Patrolled        bool   `expr:"patrolled"`
	LengthOld        int64  `expr:"length_old"`
	LengthNew        int64  `expr:"length_new"`
	RevisionOld      int64  `expr:"revision_old"`
	RevisionNew      int64  `expr:"revision_new"`
	ServerURL        string `expr:"server_url"`
	ServerName       string `expr:"server_name"`
	ServerScriptPath string `expr:"server_script_path"`
	TitleURL         string `expr:"title_url"`
	NotifyURL        string `expr:"notify_url"`
	LogID            int64  `expr:"log_id"`
	LogType          string `expr:"log_type"`
	LogAction        string `expr:"log_action"`
	LogActionComment string `expr:"log_action_comment"`
	MetaID           string `expr:"meta_id"`
	MetaDT           string `expr:"meta_dt"`
	MetaDomain       string `expr:"meta_domain"`
	MetaStream       string `expr:"meta_stream"`

	// Detector outputs (rules/detect), computed when referenced.
	VandalismScore        float64 `expr:"vandalism_score"`   // 0..1, the combined score
	ProfanityCount        int     `expr:"profanity_count"`   // bad-word hits in added text
	ProfanityRemoved      int     `expr:"profanity_removed"` // bad-word hits in removed text
	NonsenseScore         float64 `expr:"nonsense_score"`    // 0..1 gibberish in added text
	ShoutingRatio         float64 `expr:"shouting_ratio"`    // share of upper-case letters in added words
	RepeatedChars         int     `expr:"repeated_chars"`    // runs of ≥ 5 of one character in added text
	RefsRemoved           int     `expr:"refs_removed"`      // <ref> tags removed, net
	LinksAdded            int     `expr:"links_added"`       // URLs added, not in removed lines
	Blanking              bool    `expr:"blanking"`          // the page was (nearly) emptied
	AddedChars            int     `expr:"added_chars"`
	RemovedChars          int     `expr:"removed_chars"`
	CitationStale         int     `expr:"citation_stale"`           // cite templates with stale access-date, no archive (new_wikitext)
	CitationDead          int     `expr:"citation_dead"`            // url-status=dead or {{dead link}} without archive (new_wikitext)
	CitationBareURLs      int     `expr:"citation_bare_urls"`       // bare URL citations (new_wikitext)
	CitationBareURLsAdded int     `expr:"citation_bare_urls_added"` // bare URL citations in the added lines

	// Functions that need the evaluation's time and lists.
	InList       func(list, s string) bool    `expr:"in_list"`       // s is an entry of list
	ListContains func(list, text string) bool `expr:"list_contains"` // text contains an entry of list (case-insensitive)
}

// derived groups of detector outputs, computed together.
type derived uint8

const (
	derivedText      derived = 1 << iota // text signals (detect.Features.SetText)
	derivedScore                         // vandalism_score (needs text and user)
	derivedCitations                     // citation_* of new_wikitext
	derivedAddedCite                     // citation_bare_urls_added
	derivedLinks                         // added_links, removed_links
)

// varInfo is what the engine knows about one variable.
type varInfo struct {
	name    string
	index   []int // field index in Vars
	typ     reflect.Type
	need    Need
	derived derived
	caseSet bool // offline cases may set it
}

// varTable is every variable, by name. Built once, never changed.
var varTable = buildVarTable()

func buildVarTable() map[string]*varInfo {
	diff, user, text := Need{Diff: true}, Need{User: true}, Need{Wikitext: true}
	special := map[string]struct {
		need    Need
		derived derived
	}{
		"user_editcount": {user, 0}, "user_age": {user, 0}, "user_groups": {user, 0},
		"added_lines": {diff, 0}, "removed_lines": {diff, 0},
		"added_links": {diff, derivedLinks}, "removed_links": {diff, derivedLinks},
		"old_wikitext": {text, 0}, "new_wikitext": {text, 0},
		"vandalism_score":   {Need{Diff: true, User: true}, derivedText | derivedScore},
		"profanity_count":   {diff, derivedText},
		"profanity_removed": {diff, derivedText},
		"nonsense_score":    {diff, derivedText},
		"shouting_ratio":    {diff, derivedText},
		"repeated_chars":    {diff, derivedText},
		"refs_removed":      {diff, derivedText},
		"links_added":       {diff, derivedText},
		"blanking":          {diff, derivedText},
		"added_chars":       {diff, derivedText},
		"removed_chars":     {diff, derivedText},
		"citation_stale":    {text, derivedCitations}, "citation_dead": {text, derivedCitations},
		"citation_bare_urls":       {text, derivedCitations},
		"citation_bare_urls_added": {diff, derivedAddedCite},
		"user_bot_or_sysop":        {user, 0},
		"user_warns":               {user, 0}, "user_warn_level": {user, 0},
		"num_recent_reversions": {user, 0}, "page_age": {user, 0},
	}
	for _, n := range oresVarNames {
		special[n] = struct {
			need    Need
			derived derived
		}{diff, derivedText}
	}
	out := map[string]*varInfo{}
	t := reflect.TypeOf(Vars{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("expr")
		if name == "" || f.Type.Kind() == reflect.Func {
			continue
		}
		vi := &varInfo{name: name, index: f.Index, typ: f.Type}
		if s, ok := special[name]; ok {
			vi.need, vi.derived = s.need, s.derived
		}
		vi.caseSet = vi.derived == 0 || vi.derived == derivedLinks || slices.Contains(oresVarNames, name)
		out[name] = vi
	}
	return out
}

// VarNames lists every variable name, sorted (for docs and did-you-mean).
func VarNames() []string {
	out := make([]string, 0, len(varTable))
	for n := range varTable {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// NeedOf returns what enrichment the variable needs (zero for unknown names).
func NeedOf(name string) Need {
	if vi, ok := varTable[name]; ok {
		return vi.need
	}
	return Need{}
}

func (n Need) union(o Need) Need {
	return Need{Wikitext: n.Wikitext || o.Wikitext, Diff: n.Diff || o.Diff, User: n.User || o.User}
}

// minus is what n needs that have does not provide.
func (n Need) minus(have Need) Need {
	return Need{Wikitext: n.Wikitext && !have.Wikitext, Diff: n.Diff && !have.Diff, User: n.User && !have.User}
}

func (n Need) names() []string {
	var out []string
	if n.Wikitext {
		out = append(out, "wikitext")
	}
	if n.Diff {
		out = append(out, "diff")
	}
	if n.User {
		out = append(out, "user")
	}
	return out
}

// fillEvent sets every variable that comes from the event itself.
func (v *Vars) fillEvent(ev *event.RecentChange) {
	v.UserName = ev.User
	v.User = ev.User
	v.UserType = ev.UserType()
	v.PagePrefixedTitle = ev.Title
	v.Title = ev.Title
	v.PageTitle = ev.Title
	if ev.Namespace != 0 {
		if _, rest, ok := strings.Cut(ev.Title, ":"); ok {
			v.PageTitle = rest
		}
	}
	v.PageNamespace = ev.Namespace
	v.Namespace = ev.Namespace
	v.Summary = ev.Comment
	v.Comment = ev.Comment
	v.ParsedComment = ev.ParsedComment
	v.Type = ev.Type
	if ev.ID != nil {
		v.RCID = *ev.ID
	}
	v.Bot, v.Minor = ev.Bot, ev.Minor
	v.Patrolled = ev.Patrolled != nil && *ev.Patrolled
	if ev.Length.Old != nil {
		v.LengthOld = *ev.Length.Old
	}
	if ev.Length.New != nil {
		v.LengthNew = *ev.Length.New
	}
	v.OldSize, v.NewSize = v.LengthOld, v.LengthNew
	v.EditDelta = v.NewSize - v.OldSize
	if ev.Revision.Old != nil {
		v.RevisionOld = *ev.Revision.Old
	}
	if ev.Revision.New != nil {
		v.RevisionNew = *ev.Revision.New
	}
	v.ServerURL, v.ServerName, v.ServerScriptPath = ev.ServerURL, ev.ServerName, ev.ServerScriptPath
	v.TitleURL, v.NotifyURL = ev.TitleURL, ev.NotifyURL
	if ev.LogID != nil {
		v.LogID = *ev.LogID
	}
	v.LogType, v.LogAction, v.LogActionComment = ev.LogType, ev.LogAction, ev.LogActionComment
	v.MetaID, v.MetaDT, v.MetaDomain, v.MetaStream = ev.Meta.ID, ev.Meta.DT, ev.Meta.Domain, ev.Meta.Stream
	v.Wiki = ev.Wiki
	v.Timestamp = ev.Timestamp
	if v.Timestamp == 0 {
		if t := ev.Time(); !t.IsZero() {
			v.Timestamp = t.Unix()
		}
	}
	v.Action = actionOf(ev)
}

// actionOf maps a recentchange to AbuseFilter's action variable.
func actionOf(ev *event.RecentChange) string {
	switch ev.Type {
	case "edit", "new":
		return "edit"
	case "log":
		switch ev.LogType {
		case "newusers":
			return "createaccount"
		case "move", "delete", "upload", "block", "protect":
			return ev.LogType
		}
		if ev.LogAction != "" {
			return ev.LogAction
		}
		return ev.LogType
	}
	return ev.Type
}

// fillEnrichment sets what an Enricher fetched.
func (v *Vars) fillEnrichment(en *Enrichment, got Need, evTime time.Time) {
	if got.Wikitext {
		v.OldWikitext, v.NewWikitext = en.OldWikitext, en.NewWikitext
	}
	if got.Diff {
		v.AddedLines, v.RemovedLines = en.AddedLines, en.RemovedLines
		v.diffKnown = true
	}
	if got.User {
		v.userKnown = true
		v.UserEditCount = en.UserEditCount
		v.UserGroups = en.UserGroups
		v.UserBotOrSysop = slices.Contains(en.UserGroups, "bot") || slices.Contains(en.UserGroups, "sysop")
		reg := en.UserRegistration
		if reg.IsZero() && v.UserType == "named" {
			// Accounts older than registration records, as revscoring
			// (and so the ORES training data) take them.
			reg = time.Unix(detect.MWRegistrationEpoch, 0)
		}
		if !reg.IsZero() && !evTime.IsZero() && v.UserType == "named" {
			v.UserAge = max(int64(evTime.Sub(reg)/time.Second), 0)
		}
		// The edit-time context, as it was before the edit.
		v.UserWarns, v.UserWarnLevel = en.UserWarnings, en.UserWarnLevel
		v.NumRecentReversions = en.PageRecentReverts
		if v.UserType == "ip" {
			v.UserEditCount = en.IPEditsBefore
		}
		if !en.PageCreated.IsZero() && !evTime.IsZero() {
			v.PageAge = max(int64(evTime.Sub(en.PageCreated)/time.Second), 0)
		}
	}
}

// oresVarNames are the ORES text features' variable names.
var oresVarNames = []string{"longest_repeated_char_added", "words_added", "words_removed",
	"badwords_prop_delta", "informals_prop_delta", "non_stopword_prop_delta"}

// setKnown sets variables by name from an offline case's enrichment (JSON
// values: numbers, strings, booleans, lists of strings) and returns what
// they provide. Unknown names and derived variables are ignored.
func (v *Vars) setKnown(known map[string]any) (Need, error) {
	var have Need
	rv := reflect.ValueOf(v).Elem()
	for name, val := range known {
		vi, ok := varTable[name]
		if !ok || !vi.caseSet {
			continue
		}
		if err := setValue(rv.FieldByIndex(vi.index), val); err != nil {
			return have, fmt.Errorf("case variable %s: %w", name, err)
		}
		switch {
		case slices.Contains(oresVarNames, name):
			v.oresSet = true
		case name == "added_lines" || name == "removed_lines":
			v.diffKnown = true
		case vi.need.User:
			v.userKnown = true
		}
		have = have.union(vi.need)
	}
	return have, nil
}

func setValue(f reflect.Value, val any) error {
	if val == nil {
		f.SetZero()
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		s, ok := val.(string)
		if !ok {
			return fmt.Errorf("want a string, got %T", val)
		}
		f.SetString(s)
	case reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			return fmt.Errorf("want a boolean, got %T", val)
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := toFloat(val)
		if !ok || math.IsNaN(n) {
			return fmt.Errorf("want a number, got %T", val)
		}
		f.SetInt(int64(n))
	case reflect.Float64:
		n, ok := toFloat(val)
		if !ok {
			return fmt.Errorf("want a number, got %T", val)
		}
		f.SetFloat(n)
	case reflect.Slice:
		switch l := val.(type) {
		case []string:
			f.Set(reflect.ValueOf(l))
		case []any:
			out := make([]string, 0, len(l))
			for _, e := range l {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("want a list of strings, got an element of type %T", e)
				}
				out = append(out, s)
			}
			f.Set(reflect.ValueOf(out))
		default:
			return fmt.Errorf("want a list of strings, got %T", val)
		}
	default:
		return fmt.Errorf("cannot set a %s", f.Kind())
	}
	return nil
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case interface{ Float64() (float64, error) }: // json.Number
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// valueOf returns a variable's value by name (for reasons).
func (v *Vars) valueOf(name string) (any, bool) {
	vi, ok := varTable[name]
	if !ok {
		return nil, false
	}
	return reflect.ValueOf(v).Elem().FieldByIndex(vi.index).Interface(), true
}

// features fills the detectors' inputs from the variables (not the text
// signals: see textFeatures).
func (v *Vars) features() detect.Features {
	return detect.Features{
		OldSize: v.OldSize, NewSize: v.NewSize, EditDelta: v.EditDelta,
		UserType: v.UserType, UserEditCount: v.UserEditCount, UserAge: float64(v.UserAge),
		UserGroups: v.UserGroups, UserWarns: v.UserWarns, UserDistinctPages: v.UserDistinctPages,
		NumRecentEdits: v.NumRecentEdits, NumRecentReversions: v.NumRecentReversions, Bot: v.Bot,
		PageAge: float64(v.PageAge), Namespace: v.PageNamespace, Minor: v.Minor, Summary: v.Summary,
		UserKnown: v.userKnown || v.UserType == "ip" || v.UserType == "temp", BotOrSysop: v.UserBotOrSysop,
	}
}

// textFeatures is every input of the detectors and the vandalism score: the
// variables, the text signals of the diff, and ORES's features (computed
// from the diff unless the case gave them). It also sets the text signals'
// variables. The evaluator (live and on offline cases) and the training
// command (CaseFeatures) both use it, so they cannot drift apart.
func (v *Vars) textFeatures() detect.Features {
	f := v.features()
	f.SetText(v.AddedLines, v.RemovedLines)
	f.TextKnown = v.diffKnown
	switch {
	case v.oresSet:
		f.ORES = detect.ORES{LongestRepeatedCharAdded: v.LongestRepeatedCharAdded, WordsAdded: v.WordsAdded,
			WordsRemoved: v.WordsRemoved, BadwordsDelta: v.BadwordsPropDelta, InformalsDelta: v.InformalsPropDelta,
			NonStopwordDelta: v.NonStopwordPropDelta}
		f.ORESKnown = true
	case v.diffKnown:
		o := detect.ORESText(v.AddedLines, v.RemovedLines, v.OldWikitext)
		f.ORES, f.ORESKnown = o, true
		v.LongestRepeatedCharAdded, v.WordsAdded, v.WordsRemoved = o.LongestRepeatedCharAdded, o.WordsAdded, o.WordsRemoved
		v.BadwordsPropDelta, v.InformalsPropDelta, v.NonStopwordPropDelta = o.BadwordsDelta, o.InformalsDelta, o.NonStopwordDelta
	}
	v.ProfanityCount, v.ProfanityRemoved, v.NonsenseScore = f.Profanity, f.ProfanityRemoved, f.Nonsense
	v.ShoutingRatio, v.RepeatedChars, v.RefsRemoved = f.Shouting, f.RepeatedChars, f.RefsRemoved
	v.LinksAdded, v.Blanking, v.AddedChars, v.RemovedChars = f.LinksAdded, f.Blanking, f.AddedChars, f.RemovedChars
	return f
}

// CaseFeatures is what the evaluator computes as the vandalism score's
// inputs for an event with the variables known (an offline case's
// enrichment): the one feature mapping that training and serving share.
func CaseFeatures(ev *event.RecentChange, known map[string]any) (detect.Features, error) {
	var v Vars
	v.fillEvent(ev)
	if _, err := v.setKnown(known); err != nil {
		return detect.Features{}, err
	}
	return v.textFeatures(), nil
}
