package main

// Pages written straight into the reply. The simulator encodes a reply into a buffer of its own and
// then writes that buffer; for a page the lab has already encoded (paging.go, fastxml.go) that meant
// copying megabytes into a buffer grown by doubling, a quarter of what a 10,000-VM read allocated.
// Instead the page's response element holds a marker, <!--lab-page-N-->, and the writer the
// middleware puts under the two paging methods writes the page's bytes where the marker is. A
// client's text never reaches a reply unescaped, so no client can forge a marker. The page buffers
// are reused (sync.Pool).

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"time"
)

const markerStart, markerEnd = "<!--lab-page-", "-->"

type splicedPage struct {
	buf   *[]byte
	added time.Time
}

var spliced = struct {
	sync.Mutex
	pages map[int64]splicedPage
	next  int64
}{pages: map[int64]splicedPage{}}

var pageBuffers = sync.Pool{New: func() interface{} { b := make([]byte, 0, 1<<20); return &b }}

// newPageBuffer returns an empty buffer for a page, with room for at least hint bytes.
func newPageBuffer(hint int) *[]byte {
	b := pageBuffers.Get().(*[]byte)
	if cap(*b) < hint {
		*b = make([]byte, 0, hint)
	}
	*b = (*b)[:0]
	return b
}

// holdPage keeps an encoded page until the reply is written and returns the marker that stands for it.
func holdPage(buf *[]byte) []byte {
	spliced.Lock()
	defer spliced.Unlock()
	now := time.Now()
	for id, p := range spliced.pages { // pages whose reply was never written (the client went away)
		if now.Sub(p.added) > time.Minute {
			delete(spliced.pages, id)
		}
	}
	spliced.next++
	spliced.pages[spliced.next] = splicedPage{buf: buf, added: now}
	return []byte(markerStart + strconv.FormatInt(spliced.next, 10) + markerEnd)
}

func takePage(id int64) *[]byte {
	spliced.Lock()
	defer spliced.Unlock()
	p, ok := spliced.pages[id]
	if !ok {
		return nil
	}
	delete(spliced.pages, id)
	return p.buf
}

// splicingWriter writes a held page where its marker is.
type splicingWriter struct{ http.ResponseWriter }

func (s *splicingWriter) Write(b []byte) (int, error) {
	i := bytes.Index(b, []byte(markerStart))
	if i < 0 {
		return s.ResponseWriter.Write(b)
	}
	j := bytes.Index(b[i:], []byte(markerEnd))
	if j < 0 {
		return s.ResponseWriter.Write(b)
	}
	id, err := strconv.ParseInt(string(b[i+len(markerStart):i+j]), 10, 64)
	page := takePage(id)
	if err != nil || page == nil {
		return s.ResponseWriter.Write(b)
	}
	defer pageBuffers.Put(page)
	end := i + j + len(markerEnd)
	for _, part := range [][]byte{b[:i], *page, b[end:]} {
		if _, err := s.ResponseWriter.Write(part); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (s *splicingWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
