package ingest

import (
	"bytes"
	"io"

	"github.com/r3labs/sse/v2"
)

// readFrames reads SSE frames from body with the library's frame reader
// (sse.EventStreamReader: blocks between blank lines, at most max bytes)
// and calls handle for each, in the calling goroutine, until body ends
// (nil), a read fails, or handle returns an error. lastID is the
// Last-Event-ID in force (a frame without an id line carries it).
//
// The fields of a block are parsed here, not by the library's client: its
// processEvent splits every block rune by rune (bytes.FieldsFunc) and copies
// each data line twice, and its read loop hands each event to another
// goroutine over an unbuffered channel; that was about a tenth of the CPU
// of `rcwatch run` at full speed (issue 12). The semantics are the
// library's (pinned by TestSSESourceAroundLibraryFlaws and
// TestParseFrameMatchesLibrary): lines end at \n or \r, "id:", "data:",
// "event:" and "retry:" fields with one optional leading space, data lines
// joined with \n, a bare "data" line adds an empty line, a block without an
// id carries the last one, and a block is dispatched when it has an id,
// data, an event or a retry (so a comment carries the last id, as before).
func readFrames(body io.Reader, max int, lastID []byte, handle func(Frame) error) error {
	r := sse.NewEventStreamReader(body, max)
	for {
		block, err := r.ReadEvent()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		f, ok := parseFrame(block, &lastID)
		if !ok {
			continue
		}
		if err := handle(f); err != nil {
			return err
		}
	}
}

var (
	fieldID    = []byte("id:")
	fieldData  = []byte("data:")
	fieldEvent = []byte("event:")
	fieldRetry = []byte("retry:")
)

// parseFrame parses one block. The returned Frame owns its ID, Event and
// Data (the block's buffer is reused by the reader); *lastID is updated
// when the block has an id.
func parseFrame(block []byte, lastID *[]byte) (Frame, bool) {
	var f Frame
	var retry bool
	dataLines := 0
	for len(block) > 0 {
		line := block
		if i := bytes.IndexByte(block, '\n'); i >= 0 {
			line, block = block[:i], block[i+1:]
		} else {
			block = nil
		}
		if j := bytes.IndexByte(line, '\r'); j >= 0 {
			// A lone \r also ends a line: put the rest back.
			rest := line[j+1:]
			line = line[:j]
			if len(rest) > 0 {
				block = append(append(rest[:len(rest):len(rest)], '\n'), block...)
			}
		}
		if len(line) == 0 {
			continue
		}
		switch {
		case bytes.HasPrefix(line, fieldData):
			v := fieldValue(line, len(fieldData))
			if dataLines == 0 {
				f.Data = append(make([]byte, 0, len(v)), v...)
			} else {
				f.Data = append(append(f.Data, '\n'), v...)
			}
			dataLines++
		case bytes.HasPrefix(line, fieldID):
			f.ID = append([]byte(nil), fieldValue(line, len(fieldID))...)
		case bytes.HasPrefix(line, fieldEvent):
			f.Event = append([]byte(nil), fieldValue(line, len(fieldEvent))...)
		case bytes.HasPrefix(line, fieldRetry):
			retry = retry || len(fieldValue(line, len(fieldRetry))) > 0
		case string(line) == "data":
			if dataLines > 0 {
				f.Data = append(f.Data, '\n')
			}
			dataLines++
		}
	}
	if len(f.ID) > 0 {
		*lastID = f.ID
	} else {
		f.ID = *lastID
	}
	return f, len(f.ID) > 0 || len(f.Data) > 0 || len(f.Event) > 0 || retry
}

// fieldValue is the value after a field name of n bytes (its colon
// included), without one leading space.
func fieldValue(line []byte, n int) []byte {
	v := line[n:]
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return v
}
