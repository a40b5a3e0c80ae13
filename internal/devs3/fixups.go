package devs3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// fixups adapts requests that gofakes3 v1.2.0 mishandles, before they reach it:
//
//   - Bodies signed chunk by chunk (x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD,
//     what minio-go sends over plain HTTP) are decoded here. gofakes3 decodes them for
//     PutObject but stores the chunk framing verbatim in multipart parts, corrupting every
//     multipart object, and refuses an empty one for want of a Content-Length. Chunk
//     signatures are not checked (gofakes3 checks no signature anyway).
//   - A request for server-side encryption is refused with 501 NotImplemented: gofakes3
//     would echo the header back without encrypting anything, and clients that probe for
//     encryption must not be told it happened.
func fixups(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Server-Side-Encryption") != "" {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotImplemented)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
				`<Error><Code>NotImplemented</Code><Message>server-side encryption is not supported by the embedded development S3 server</Message></Error>`)
			return
		}
		if strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
			n, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
			if err != nil || n < 0 {
				http.Error(w, "missing x-amz-decoded-content-length", http.StatusBadRequest)
				return
			}
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.LimitReader(&chunkedReader{r: bufio.NewReader(r.Body)}, n), r.Body}
			r.ContentLength = n
			r.TransferEncoding = nil
			r.Header.Set("Content-Length", strconv.FormatInt(n, 10))
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			r.Header.Del("X-Amz-Decoded-Content-Length")
			r.Header.Del("Content-Encoding") // "aws-chunked"
		}
		next.ServeHTTP(w, r)
	})
}

// chunkedReader decodes an aws-chunked body: "<hex size>;chunk-signature=<sig>\r\n<data>\r\n",
// repeated, ending with a zero-size chunk. A malformed or truncated body is an error, never
// a short clean EOF, so a broken upload cannot complete an object.
type chunkedReader struct {
	r    *bufio.Reader
	left int64 // bytes left in the current chunk
	eof  bool
	err  error
}

var errChunkFormat = errors.New("devs3: malformed aws-chunked body")

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.eof {
		return 0, io.EOF
	}
	if c.left == 0 {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, c.fail(err)
		}
		hexSize, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		size, err := strconv.ParseInt(string(hexSize), 16, 64)
		if err != nil || size < 0 {
			return 0, c.fail(fmt.Errorf("%w: chunk size %q", errChunkFormat, hexSize))
		}
		if size == 0 {
			c.eof = true
			return 0, io.EOF
		}
		c.left = size
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if err != nil {
		return n, c.fail(err)
	}
	if c.left == 0 {
		var crlf [2]byte
		if _, err := io.ReadFull(c.r, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
			return n, c.fail(errChunkFormat)
		}
	}
	return n, nil
}

func (c *chunkedReader) fail(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	return err
}
