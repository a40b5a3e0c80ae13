package hl7v2

import (
	"bufio"
	"io"

	"github.com/concord-hie/concord/internal/errs"
)

// MLLP frame bytes.
const (
	StartBlock     = 0x0B
	EndBlock       = 0x1C
	CarriageReturn = 0x0D
)

// DefaultMaxMessage is the frame size limit used when none is configured.
const DefaultMaxMessage = 4 << 20

// FrameReader extracts MLLP frames (0x0B message 0x1C 0x0D) from a stream. Bytes between
// frames are skipped. A frame longer than the limit is never held whole: Next returns
// errs.TooLarge with the frame's first bytes (enough for its MSH), skips the rest up to
// the frame's end, and the following call continues with the next frame. A 0x0B inside a
// frame starts a new frame (the unterminated one is dropped). A 0x1C not followed by
// 0x0D still ends the frame: Next returns as soon as it reads the 0x1C, never waiting for
// the 0x0D.
type FrameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewFrameReader returns a FrameReader over r accepting frames of at most max bytes
// (DefaultMaxMessage when max <= 0).
func NewFrameReader(r io.Reader, max int) *FrameReader {
	if max <= 0 {
		max = DefaultMaxMessage
	}
	return &FrameReader{r: bufio.NewReaderSize(r, 32<<10), max: max}
}

// Next returns the next frame's content, valid until the following call. At a clean end
// of stream between frames it returns io.EOF; inside a frame io.ErrUnexpectedEOF. For an
// oversize frame it returns its first bytes and errs.TooLarge.
func (fr *FrameReader) Next() ([]byte, error) {
	// Skip to the start block.
	for {
		c, err := fr.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == StartBlock {
			break
		}
	}
	fr.buf = fr.buf[:0]
	oversize := false
	for {
		chunk, err := fr.r.ReadSlice(EndBlock)
		body := chunk
		if err == nil {
			body = chunk[:len(chunk)-1]
		}
		// A start block inside the frame restarts it.
		for {
			i := indexByte(body, StartBlock)
			if i < 0 {
				break
			}
			fr.buf = fr.buf[:0]
			oversize = false
			body = body[i+1:]
		}
		if !oversize {
			if room := fr.max - len(fr.buf); len(body) > room {
				fr.buf = append(fr.buf, body[:room]...)
				oversize = true
			} else {
				fr.buf = append(fr.buf, body...)
			}
		}
		switch err {
		case nil:
			// The CR that should follow the end block is not waited for: a sender that
			// ends the frame with 0x1C alone and waits for its ACK must get it. The next
			// call skips the CR with any other bytes before the next start block.
			if oversize {
				return fr.buf, errs.E("hl7v2.FrameReader.Next", errs.TooLarge, "message too large")
			}
			return fr.buf, nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// AppendFrame appends msg wrapped in an MLLP frame to dst.
func AppendFrame(dst, msg []byte) []byte {
	dst = append(dst, StartBlock)
	dst = append(dst, msg...)
	return append(dst, EndBlock, CarriageReturn)
}

// WriteFrame writes msg as one MLLP frame with a single Write.
func WriteFrame(w io.Writer, msg []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, len(msg)+3), msg))
	return err
}
