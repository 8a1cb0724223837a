package detect

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// The vandalism score is a small gradient-boosted tree ensemble (Trees)
// over Inputs, trained by cmd/rcwatch-train on ORES's edit-time feature set
// together with the ClueBot NG text cases (docs/DETECTION.md). Its file,
// model.json, is versioned beside this code and embedded.

// Input indexes, in the order of Inputs and of InputNames.
const (
	inLongestRepeated = iota
	inWordsAdded
	inWordsRemoved
	inBadwordsDelta
	inInformalsDelta
	inNonStopwordDelta
	inAnonymous
	inBotOrSysop
	inLogUserAge
	inNoSummary
	inSectionSummary
	inRevertSummary
	inAutoBlank
	inMinor
	inProfanity
	inProfanityRemoved
	inInformal
	inNonsense
	inShouting
	inRepeated
	inTestEdit
	inRefsRemoved
	inMarkupAdded
	inRemoved
	inProse
	inSmallFix
	inLinksAdded
	inLogPageAge
	numInputs
)

// NumInputs is the number of model inputs.
const NumInputs = numInputs

var inputNames = [numInputs]string{
	"longest_repeated_char_added", "words_added", "words_removed", "badwords_prop_delta",
	"informals_prop_delta", "non_stopword_prop_delta", "anonymous", "bot_or_sysop", "log10_user_age_days",
	"no_summary", "section_summary_only", "revert_summary", "blank_summary", "minor",
	"profanity", "profanity_removed", "informal", "nonsense", "shouting", "repeated_chars", "test_edit",
	"refs_removed", "markup_added", "log_removed", "prose", "small_fix", "links_added", "log10_page_age_days",
}

// InputName names model input i (see Inputs).
func InputName(i int) string { return inputNames[i] }

// InputNames lists the model inputs in order.
func InputNames() []string { return append([]string(nil), inputNames[:]...) }

// Inputs maps features to the model's inputs. What is not known is NaN
// (missing), never 0: the trees send missing values the way training
// learned for them. ORES's nine need the diff (or an ORES case), the user
// inputs the user's data, and the summary and text signals the diff's lines
// (an ORES case has no text and no summary).
func Inputs(f Features) [numInputs]float64 {
	var x [numInputs]float64
	for i := range x {
		x[i] = math.NaN()
	}
	anon := f.UserType == "ip" || f.UserType == "temp"
	x[inAnonymous] = b2f(anon)
	if f.ORESKnown {
		o := f.ORES
		x[inLongestRepeated] = float64(min(o.LongestRepeatedCharAdded, 1000))
		x[inWordsAdded] = float64(min(o.WordsAdded, 1_000_000))
		x[inWordsRemoved] = float64(min(o.WordsRemoved, 1_000_000))
		x[inBadwordsDelta] = o.BadwordsDelta
		x[inInformalsDelta] = o.InformalsDelta
		x[inNonStopwordDelta] = o.NonStopwordDelta
	}
	if f.UserKnown || anon {
		x[inBotOrSysop] = b2f(!anon && f.BotOrSysop)
		if !anon {
			// Seconds since registration, as log10 days (a brand-new
			// account is -5).
			x[inLogUserAge] = math.Log10(math.Max(f.UserAge, 1) / 86400)
		}
	}
	if f.TextKnown {
		empty, section, revert := summaryKind(f.Summary)
		x[inNoSummary] = b2f(empty)
		x[inSectionSummary] = b2f(section)
		x[inRevertSummary] = b2f(revert)
		x[inAutoBlank] = b2f(autoBlankSummaryRE.MatchString(f.Summary))
		x[inMinor] = b2f(f.Minor)
		x[inProfanity] = perWords(f.Profanity, f.InsertedWords, 3)
		x[inProfanityRemoved] = float64(min(f.ProfanityRemoved, 3))
		x[inInformal] = perWords(f.Informal, f.InsertedWords, 3)
		x[inNonsense] = f.Nonsense
		x[inShouting] = f.Shouting
		x[inRepeated] = float64(min(f.RepeatedChars, 3))
		x[inTestEdit] = b2f(f.TestEdit)
		x[inRefsRemoved] = float64(min(f.RefsRemoved, 3))
		x[inMarkupAdded] = math.Log1p(float64(min(f.MarkupAdded, 50)))
		// Net removal: 0 below 100 characters, 1 at 1,000, 2 at 10,000.
		x[inRemoved] = math.Max(0, math.Log10(1+float64(max(f.RemovedChars-f.AddedChars, int(-f.EditDelta), 0)))-2)
		x[inProse] = b2f(f.ProseShare >= 0.5)
		x[inSmallFix] = b2f(f.SmallFix)
		x[inLinksAdded] = float64(min(f.LinksAdded, 10))
	}
	if f.PageAge > 0 {
		// log10 of the age in days, centred on about 3 years.
		x[inLogPageAge] = math.Log10(f.PageAge/86400) - 3
	}
	return x
}

// perWords is a count capped at limit, scaled down for long insertions
// (beyond 40 words) so that a rewrite of a plot summary is not judged like a
// one-line addition.
func perWords(count, words int, limit float64) float64 {
	v := float64(count)
	if words > 40 {
		v = v * 40 / float64(words)
	}
	return math.Min(v, limit)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Node is one node of a regression tree. An inner node sends x to Left when
// x[Feature] < Threshold, to Right when it is ≥, and a missing (NaN) value
// to Left when MissingLeft. A leaf (Left == 0) holds Value.
type Node struct {
	Feature     int     `json:"f,omitempty"`
	Threshold   float64 `json:"t,omitempty"`
	Left        int     `json:"l,omitempty"`
	Right       int     `json:"r,omitempty"`
	MissingLeft bool    `json:"m,omitempty"`
	Value       float64 `json:"v,omitempty"`
}

// Tree is a regression tree; Nodes[0] is the root.
type Tree []Node

// Eval is the tree's value for x.
func (t Tree) Eval(x []float64) float64 {
	i := 0
	for {
		n := &t[i]
		if n.Left == 0 {
			return n.Value
		}
		v := x[n.Feature]
		switch {
		case math.IsNaN(v):
			if n.MissingLeft {
				i = n.Left
			} else {
				i = n.Right
			}
		case v < n.Threshold:
			i = n.Left
		default:
			i = n.Right
		}
	}
}

// Model is a gradient-boosted tree ensemble with a linear stage:
// score = σ(Base + Σ tree(x) + [text known] (TextBias + Σ Linear[i]·x[i])).
// The trees learn from ORES's large set (the user and ORES's nine
// features); the linear stage adds what only the ClueBot NG cases with text
// can teach (the summary and the text signals), with few enough parameters
// for 28 vandal edits. A missing (NaN) input adds nothing to the linear
// stage, and the stage applies only when the text is known
// (TextInput is not NaN).
type Model struct {
	Inputs    []string  `json:"inputs"`    // input names, in order (must match InputNames)
	Base      float64   `json:"base"`      // the initial log-odds
	Threshold float64   `json:"threshold"` // the default rule pack's alerting threshold
	Trees     []Tree    `json:"trees"`
	TextBias  float64   `json:"text_bias"`
	Linear    []float64 `json:"linear,omitempty"` // per input (0: not in the stage)
	Note      string    `json:"note,omitempty"`   // how it was trained
}

// TextInput is the input whose presence means the text (and summary) is
// known: the linear stage applies only then.
const TextInput = inNoSummary

// Linear inputs: the ones the trees do not split on (they are unknown in
// ORES's set) and the linear stage weighs.
func IsLinearInput(i int) bool { return i >= inNoSummary }

// Logit is Base + Σ tree(x) + the linear stage.
func (m *Model) Logit(x []float64) float64 {
	z := m.Base
	for _, t := range m.Trees {
		z += t.Eval(x)
	}
	if len(m.Linear) == len(x) && !math.IsNaN(x[TextInput]) {
		z += m.TextBias
		for i, w := range m.Linear {
			if w != 0 && !math.IsNaN(x[i]) {
				z += w * x[i]
			}
		}
	}
	return z
}

// Score is σ(Logit(Inputs(f))).
func (m *Model) Score(f Features) float64 {
	x := Inputs(f)
	return Sigmoid(m.Logit(x[:]))
}

// Check reports whether m fits this code's inputs and its trees are sound.
func (m *Model) Check() error {
	if len(m.Inputs) != numInputs {
		return fmt.Errorf("model has %d inputs, the code %d", len(m.Inputs), numInputs)
	}
	for i, n := range m.Inputs {
		if n != inputNames[i] {
			return fmt.Errorf("model input %d is %q, the code's %q", i, n, inputNames[i])
		}
	}
	if len(m.Linear) != 0 && len(m.Linear) != numInputs {
		return fmt.Errorf("model has %d linear weights, the code %d inputs", len(m.Linear), numInputs)
	}
	for k, t := range m.Trees {
		if len(t) == 0 {
			return fmt.Errorf("tree %d is empty", k)
		}
		for i, n := range t {
			if n.Left == 0 {
				continue
			}
			if n.Left <= i || n.Right <= i || n.Left >= len(t) || n.Right >= len(t) || n.Feature < 0 || n.Feature >= numInputs {
				return fmt.Errorf("tree %d node %d is malformed", k, i)
			}
		}
	}
	return nil
}

// Sigmoid is the logistic function.
func Sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

//go:embed model.json
var modelJSON []byte

var defaultModel = func() *Model {
	var m Model
	if err := json.Unmarshal(modelJSON, &m); err != nil {
		panic("rules/detect: model.json: " + err.Error())
	}
	if err := m.Check(); err != nil {
		panic("rules/detect: model.json: " + err.Error())
	}
	return &m
}()

// DefaultModel returns the embedded model VandalismScore uses.
func DefaultModel() *Model { return defaultModel }

// DefaultThreshold is the score at which the default rule pack's
// vandalism-score rule fires (model.json's threshold; docs/DETECTION.md).
var DefaultThreshold = defaultModel.Threshold

// VandalismScore is the combined vandalism score of an edit, 0..1: the
// probability of vandalism under the embedded model, over what is known at
// edit time about the performer (anonymous, bot or sysop, account age), the
// edit summary, the page's age and the text signals of the diff. Bots score 0.
// Without the diff (ORESKnown false: the enricher could not fetch it) there
// is nothing to judge and the score is 0: the user alone is not a verdict.
func VandalismScore(f Features) float64 {
	if f.Bot || !f.ORESKnown {
		return 0
	}
	return defaultModel.Score(f)
}

// VandalismReasons explains a score: the inputs whose values raised it most
// (each one's effect measured by treating it as unknown), in human words,
// strongest first. Inputs that lower the score are not listed.
func VandalismReasons(f Features) []string {
	x := Inputs(f)
	z := defaultModel.Logit(x[:])
	type contrib struct {
		w      float64
		reason string
	}
	var cs []contrib
	for i, v := range x {
		if math.IsNaN(v) {
			continue
		}
		if !isReason(i, v) {
			continue
		}
		x[i] = math.NaN()
		c := z - defaultModel.Logit(x[:])
		x[i] = v
		if c < 0.25 {
			continue
		}
		cs = append(cs, contrib{c, reasonText(i, f)})
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].w > cs[j].w })
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.reason)
	}
	return out
}

// isReason reports whether input i's value v says something about the edit
// that can be a reason: a flag that is set, a count above nothing. The
// trees route "not a bot" and "unknown" apart, so treating an unset flag as
// unknown can move the score, but "not a bot or sysop" is no reason to
// suspect an edit.
func isReason(i int, v float64) bool {
	switch i {
	case inLogUserAge, inLogPageAge, inNonStopwordDelta:
		return true
	case inLongestRepeated:
		return v >= 3
	case inMarkupAdded, inMinor, inSmallFix, inRevertSummary, inBotOrSysop:
		return false // they lower a score, never raise it as a reason a patroller would read
	}
	return v > 0
}

func reasonText(i int, f Features) string {
	switch i {
	case inAnonymous:
		return "edit by an unregistered (" + f.UserType + ") user"
	case inLogUserAge:
		return fmt.Sprintf("account registered %.0f day(s) before the edit", f.UserAge/86400)
	case inNoSummary:
		return "no edit summary"
	case inProfanity:
		return fmt.Sprintf("adds %d profane word(s)", f.Profanity)
	case inBadwordsDelta:
		return fmt.Sprintf("adds bad words (ORES list, %+.2g)", f.ORES.BadwordsDelta)
	case inInformalsDelta:
		return fmt.Sprintf("adds informal words (ORES list, %+.2g)", f.ORES.InformalsDelta)
	case inInformal:
		return fmt.Sprintf("adds %d informal word(s) or exclamation(s)", f.Informal)
	case inNonsense:
		return fmt.Sprintf("added text looks like gibberish (%.0f%%)", 100*f.Nonsense)
	case inShouting:
		return fmt.Sprintf("added text is shouting (%.0f%% capitals)", 100*f.Shouting)
	case inRepeated, inLongestRepeated:
		return fmt.Sprintf("adds a run of %d repeated characters", f.ORES.LongestRepeatedCharAdded)
	case inTestEdit:
		return "saves the editing toolbar's placeholder text (a test edit)"
	case inAutoBlank:
		return "the page was blanked or its content replaced"
	case inRemoved, inWordsRemoved:
		return fmt.Sprintf("removes %d characters", max(f.RemovedChars-f.AddedChars, int(-f.EditDelta)))
	case inRefsRemoved:
		return fmt.Sprintf("removes %d reference(s)", f.RefsRemoved)
	case inLinksAdded:
		return fmt.Sprintf("adds %d external links", f.LinksAdded)
	case inWordsAdded:
		return fmt.Sprintf("adds %d word(s)", f.ORES.WordsAdded)
	case inNonStopwordDelta:
		return fmt.Sprintf("change in content words (ORES, %+.1f)", f.ORES.NonStopwordDelta)
	case inProse:
		return "adds prose"
	case inSectionSummary:
		return "the summary is only the section name"
	case inLogPageAge:
		return fmt.Sprintf("page created %.0f day(s) before the edit", f.PageAge/86400)
	}
	return inputNames[i]
}
