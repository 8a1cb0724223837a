package mediawiki

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every captured error, in both shapes (formatversion 1 "*" / formatversion
// 2 "docref", and the errors array of errorformat=plaintext), decodes to the
// right code and sentinel.
func TestDecodeErrorFixtures(t *testing.T) {
	for _, tc := range []struct {
		file     string
		code     string
		sentinel error
	}{
		{"mwapi.error.articleexists.arwiki.json", "articleexists", ErrArticleExists},
		{"mwapi.error.badtoken.commonswiki.json", "badtoken", ErrBadToken},
		{"mwapi.error.missingtitle.enwiki.json", "missingtitle", ErrMissingTitle},
		{"mwapi.error.mwoauth-invalid-authorization.eswiki.formatversion2.json", "mwoauth-invalid-authorization", ErrPermissionDenied},
		{"mwapi.error.too-many-pageids.eswiki.formatversion2.json", "too-many-pageids", nil},
		{"mwapi.error.unknown_action.frwiki.json", "unknown_action", nil},
		{"mediawiki-1.39/09-edit-badtoken.json", "badtoken", ErrBadToken},
		{"mediawiki-1.39/11-assert-bot-anon.json", "assertbotfailed", ErrAssertFailed},
		{"mediawiki-1.39/11b-assertuser-fail.json", "assertnameduserfailed", ErrAssertFailed},
		{"mediawiki-1.39/23-edit-conflict.json", "editconflict", ErrEditConflict},
		{"mediawiki-1.39/25-articleexists.json", "articleexists", ErrArticleExists},
		{"mediawiki-1.39/25b-missingtitle.json", "missingtitle", ErrMissingTitle},
		{"mediawiki-1.39/26b-protectedpage.json", "protectedpage", ErrProtected},
		{"mediawiki-1.39/27-rollback-bot-denied.json", "permissiondenied", ErrPermissionDenied},
		{"mediawiki-1.39/27c-rollback-onlyauthor.json", "alreadyrolled", ErrAlreadyRolled},
		{"mediawiki-1.39/29-readonly.json", "readonly", ErrReadOnly},
		{"mediawiki-1.39/32c-compare-nosuchrev.json", "nosuchrevid", ErrNoSuchRevision},
		{"mediawiki-1.39/33c-edit-undo-conflict.json", "undofailure", ErrUndoFailed},
	} {
		t.Run(tc.file, func(t *testing.T) {
			err := decodeResponse(200, http.Header{}, fixtures.Read(t, tc.file), nil, time.Now())
			var ae *APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tc.code, ae.Code)
			assert.NotEmpty(t, ae.Info)
			if tc.sentinel != nil {
				assert.ErrorIs(t, err, tc.sentinel)
			}
			assert.NotErrorIs(t, err, ErrMaxLag)
		})
	}
	ro := decodeResponse(200, http.Header{}, fixtures.Read(t, "mediawiki-1.39/29-readonly.json"), nil, time.Now())
	var ae *APIError
	require.ErrorAs(t, ro, &ae)
	assert.Equal(t, "Scout maintenance window\n", ae.Data["readonlyreason"])
}

func TestDecodeMaxLag(t *testing.T) {
	now := time.Date(2026, 11, 25, 4, 51, 41, 0, time.UTC)
	hdr := http.Header{"Retry-After": {"5"}, "X-Database-Lag": {"7"}, "Mediawiki-Api-Error": {"maxlag"}}
	for _, tc := range []struct {
		name string
		hdr  http.Header
		body []byte
		wait time.Duration
		lag  time.Duration
	}{
		{"1.39 with headers", hdr, fixtures.Read(t, "mediawiki-1.39/28-maxlag.json"), 5 * time.Second, 7 * time.Second},
		{"edit with headers", hdr, fixtures.Read(t, "mediawiki-1.39/28b-edit-maxlag.json"), 5 * time.Second, 7 * time.Second},
		{"mediawiki.org, no headers: lag from the body", http.Header{}, fixtures.Read(t, "mwapi.error.maxlag.mediawikiwiki.json"), time.Second, 596 * time.Millisecond},
		{"errorformat=plaintext", hdr, []byte(`{"errors":[{"code":"maxlag","text":"Waiting for a database server: 7 seconds lagged.","data":{"host":"fake-replica","lag":7,"type":"db"},"module":"main"}],"docref":"x"}`), 5 * time.Second, 7 * time.Second},
		{"Retry-After as a date", http.Header{"Retry-After": {"Wed, 25 Nov 2026 04:51:51 GMT"}}, fixtures.Read(t, "mediawiki-1.39/28-maxlag.json"), 10 * time.Second, 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := decodeResponse(200, tc.hdr, tc.body, nil, now)
			require.ErrorIs(t, err, ErrMaxLag)
			var be *BackoffError
			require.ErrorAs(t, err, &be)
			assert.Equal(t, tc.wait, be.Wait)
			assert.Equal(t, tc.lag, be.Lag)
		})
	}
}

func TestDecodeHTTPAndShapes(t *testing.T) {
	now := time.Now()
	t.Run("429 with Retry-After", func(t *testing.T) {
		err := decodeResponse(429, http.Header{"Retry-After": {"3"}}, []byte("Too many requests"), nil, now)
		require.ErrorIs(t, err, ErrRateLimited)
		w, ok := RetryAfter(err)
		require.True(t, ok)
		assert.Equal(t, 3*time.Second, w)
	})
	t.Run("503", func(t *testing.T) {
		err := decodeResponse(503, http.Header{}, nil, nil, now)
		require.ErrorIs(t, err, ErrUnavailable)
	})
	t.Run("ratelimited", func(t *testing.T) {
		err := decodeResponse(200, http.Header{}, []byte(`{"errors":[{"code":"ratelimited","text":"As an anti-abuse measure…","module":"edit"}]}`), nil, now)
		require.ErrorIs(t, err, ErrRateLimited)
		w, _ := RetryAfter(err)
		assert.Equal(t, DefaultRateLimitedWait, w)
	})
	t.Run("PHP fatal page", func(t *testing.T) {
		err := decodeResponse(500, http.Header{}, []byte("<html>Fatal error</html>"), nil, now)
		var he *HTTPError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, 500, he.StatusCode)
		assert.True(t, transient(err))
	})
	t.Run("several errors", func(t *testing.T) {
		err := decodeResponse(200, http.Header{}, []byte(`{"errors":[{"code":"protectedpage","text":"p"},{"code":"blocked","text":"b"}]}`), nil, now)
		assert.ErrorIs(t, err, ErrProtected)
		assert.ErrorIs(t, err, ErrBlocked)
	})
	t.Run("success fixtures", func(t *testing.T) {
		var edit struct {
			Edit EditResult `json:"edit"`
		}
		require.NoError(t, decodeResponse(200, http.Header{}, fixtures.Read(t, "mediawiki-1.39/07-edit-nochange.json"), &edit, now))
		assert.True(t, edit.Edit.NoChange)
		require.NoError(t, decodeResponse(200, http.Header{}, fixtures.Read(t, "mediawiki-1.39/06-edit-baserevid.json"), &edit, now))
		assert.Equal(t, int64(3), edit.Edit.NewRevID)
		var rb struct {
			Rollback RollbackResult `json:"rollback"`
		}
		require.NoError(t, decodeResponse(200, http.Header{}, fixtures.Read(t, "mediawiki-1.39/27b-rollback-admin.json"), &rb, now))
		assert.Equal(t, RollbackResult{Title: "Conflict page", PageID: 3, Summary: "revert bot", RevID: 9, OldRevID: 8, LastRevID: 5}, rb.Rollback)
		var qp queryPages
		require.NoError(t, decodeResponse(200, http.Header{}, fixtures.Read(t, "mediawiki-1.39/14-revisions.json"), &qp, now))
		require.Len(t, qp.Query.Pages, 1)
		r := qp.Query.Pages[0].Revisions[1].revision(qp.Query.Pages[0])
		assert.Equal(t, "First revision by bot.\n\nSecond line.", r.Content)
		assert.Equal(t, int64(2), r.ParentID)
	})
}

func TestEditParams(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  EditRequest
		want map[string]string
		err  error
	}{
		{"text with base", EditRequest{Title: "P", Text: "t", BaseRevID: 7, Summary: "s"},
			map[string]string{"text": "t", "baserevid": "7", "bot": "1", "assert": "bot", "summary": "s", "notminor": "1"}, nil},
		{"create only", EditRequest{Title: "P", Text: "t", CreateOnly: true, Assert: "user"},
			map[string]string{"createonly": "1", "assert": "user"}, nil},
		{"append", EditRequest{Title: "P", AppendText: "\n* x", BaseRevID: 3, Minor: true, Tags: []string{"a", "b"}},
			map[string]string{"appendtext": "\n* x", "minor": "1", "tags": "a|b"}, nil},
		{"no base", EditRequest{Title: "P", Text: "t"}, nil, ErrInvalidRequest},
		{"blank refused", EditRequest{Title: "P", BaseRevID: 1}, nil, ErrInvalidRequest},
		{"blank allowed", EditRequest{Title: "P", BaseRevID: 1, AllowBlank: true}, map[string]string{"text": ""}, nil},
		{"two kinds", EditRequest{Title: "P", Text: "a", AppendText: "b", BaseRevID: 1}, nil, ErrInvalidRequest},
		{"no title", EditRequest{Text: "a", BaseRevID: 1}, nil, ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.req.params("bot")
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.False(t, p.Has("basetimestamp"), "never basetimestamp")
			for k, v := range tc.want {
				assert.Equal(t, v, p.Get(k), k)
			}
		})
	}
}

func FuzzDecodeResponse(f *testing.F) {
	for _, name := range []string{"mediawiki-1.39/28-maxlag.json", "mediawiki-1.39/29-readonly.json",
		"mwapi.error.badtoken.commonswiki.json", "mediawiki-1.39/14-revisions.json", "mediawiki-1.39/05-edit-create.json"} {
		f.Add(200, "5", "7", fixtures.Read(f, name))
	}
	f.Add(200, "", "", []byte(`{"errors":[{"code":"maxlag","data":{"lag":"x"}}]}`))
	f.Add(429, "Wed, 25 Nov 2026 04:51:51 GMT", "", []byte(""))
	f.Add(200, "-1", "1e400", []byte(`{"error":"notanobject"}`))
	f.Fuzz(func(t *testing.T, status int, retryAfter, lag string, body []byte) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		h.Set("X-Database-Lag", lag)
		var out struct {
			Edit  EditResult `json:"edit"`
			Query struct {
				Pages []apiPage `json:"pages"`
			} `json:"query"`
		}
		err := decodeResponse(status, h, body, &out, time.Unix(1795582301, 0))
		if err == nil {
			return
		}
		var ae *APIError
		if errors.As(err, &ae) {
			if ae.Code == "" || len(ae.Codes) == 0 {
				t.Fatalf("API error without a code: %#v", ae)
			}
		}
		if w, ok := RetryAfter(err); ok && (w < 0 || w > 24*time.Hour) {
			t.Fatalf("wait out of range: %s", w)
		}
		if strings.TrimSpace(err.Error()) == "" {
			t.Fatal("empty error message")
		}
	})
}
