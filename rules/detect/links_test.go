package detect

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLinks(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"none", []string{"no links here", "[[Internal|link]]"}, nil},
		{"bracketed", []string{"see [http://example.org/a?b=1 Example]."}, []string{"http://example.org/a?b=1"}},
		{"bare with dot", []string{"at https://spam.example/buy."}, []string{"https://spam.example/buy"}},
		{"in ref", []string{"<ref>https://x.org/p</ref>"}, []string{"https://x.org/p"}},
		{"protocol relative", []string{"[//example.org/x title]"}, []string{"//example.org/x"}},
		{"template", []string{"{{cite web|url=http://a.org/b|title=T}}"}, []string{"http://a.org/b"}},
		{"two lines", []string{"http://a.org", "ftp://b.org/f"}, []string{"http://a.org", "ftp://b.org/f"}},
		{"scheme only", []string{"http://"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Links(tt.lines))
		})
	}
	assert.Equal(t, []string{"http://new.org"}, AddedLinks([]string{"http://old.org http://new.org"}, []string{"http://old.org"}))
}

func TestRefsRemoved(t *testing.T) {
	tests := []struct {
		name           string
		removed, added []string
		want           int
	}{
		{"none", nil, nil, 0},
		{"one removed", []string{`Fact.<ref>Source</ref>`}, []string{"Fact."}, 1},
		{"named and reused", []string{`A<ref name="x">S</ref> B<ref name=x />`}, []string{"A B"}, 2},
		{"moved", []string{`A<ref>S</ref>`}, []string{`B<ref>S</ref>`}, 0},
		{"added", nil, []string{`<ref>S</ref>`}, 0},
		{"references tag", []string{"<references />", "{{reflist}}"}, nil, 0},
		{"case", []string{"<REF>S</REF>"}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, RefsRemoved(tt.removed, tt.added))
		})
	}
}

func TestInsertedText(t *testing.T) {
	tests := []struct {
		name           string
		added, removed []string
		want           string
	}{
		{"word swapped", []string{"the rain forests of Panama"}, []string{"the rain forests of Panama"}, ""},
		{"insertion", []string{"According to coach holt the belief"}, []string{"According to the belief"}, "coach holt"},
		{"replacement", []string{"subtropical candy forests"}, []string{"subtropical rain forests"}, "candy"},
		{"marks kept", []string{"Great!!! <ref>"}, []string{"Great"}, "!!! < ref >"},
		{"new line", []string{"hello world"}, nil, "hello world"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, InsertedText(tt.added, tt.removed))
		})
	}
}

func FuzzLinks(f *testing.F) {
	for _, s := range []string{"", "http://a.org", "[//x y]", "<ref name=a/>", "http://\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, u := range Links([]string{s}) {
			if u == "" {
				t.Fatalf("empty link from %q", s)
			}
		}
		if RefsRemoved([]string{s}, []string{s}) != 0 {
			t.Fatalf("RefsRemoved of an unchanged line is not 0: %q", s)
		}
	})
}
