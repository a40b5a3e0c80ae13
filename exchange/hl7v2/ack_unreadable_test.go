package hl7v2

import (
	"context"
	"testing"
	"time"
)

// TestACKForUnreadableHeaderParses: a message refused because a header field holds a
// control character (AE 102 from Parse), raw or escaped as \Xhh\, still gets an ACK that
// itself parses, and that the sender can match by MSA-2 whenever its MSH-10 is readable.
// The ACK used to copy MSH-3..MSH-6 raw and MSH-10 decoded, control characters included,
// so it did not parse: the sender could not tell which message was refused, or that it
// was refused at all. An unreadable MSH-10 leaves MSA-2 empty rather than altered (the
// sender matches by order on the connection); no field is copied with the character
// stripped.
func TestACKForUnreadableHeaderParses(t *testing.T) {
	addr := startServer(t, &Server{Handler: HandlerFunc(func(context.Context, ConnInfo, *Message) Ack { return Accept() })})
	tests := []struct {
		name, msg  string
		msa2, err2 string // the ACK's MSA-2 and ERR-2
		msh5, msh6 string // the ACK's MSH-5 and MSH-6: the message's MSH-3 and MSH-4
	}{
		{"MSH-3 control byte",
			"MSH|^~\\&|APP\x01|FAC|CONCORD|HIE|20250301080000||ADT^A01|CTL1|P|2.5.1\rPID|1||X^^^F\r",
			"CTL1", "MSH^1^3", "", "FAC"},
		{"MSH-4 escaped control",
			"MSH|^~\\&|APP|F\\X1B\\AC|CONCORD|HIE|20250301080000||ADT^A01|CTL3|P|2.5.1\rPID|1||X^^^F\r",
			"CTL3", "MSH^1^4", "APP", ""},
		{"MSH-10 escaped control",
			"MSH|^~\\&|APP|FAC|CONCORD|HIE|20250301080000||ADT^A01|CTL\\X01\\2|P|2.5.1\rPID|1||X^^^F\r",
			"", "MSH^1^10", "APP", "FAC"},
		{"MSH-10 raw C1 control",
			"MSH|^~\\&|APP|FAC|CONCORD|HIE|20250301080000||ADT^A01|CTL\u00854|P|2.5.1\rPID|1||X^^^F\r",
			"", "MSH^1^10", "APP", "FAC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ack, err := NewClient(dial(t, addr)).Send(ctx, []byte(tt.msg))
			if err != nil {
				t.Fatalf("the ACK does not parse: %v", err)
			}
			for loc, want := range map[string]string{
				"MSA-1": "AE", "MSA-2": tt.msa2, "ERR-2": tt.err2, "ERR-3.1": "102",
				"MSH-5": tt.msh5, "MSH-6": tt.msh6, "MSH-3": "CONCORD", "MSH-4": "HIE",
			} {
				if got := ack.Get(loc); got != want {
					t.Errorf("%s = %q, want %q", loc, got, want)
				}
			}
		})
	}
}

// FuzzACK: whatever bytes arrive, the ACK the server builds for them parses: from what
// ReadHeader could read of bytes that do not parse, and from the message's Header when
// they do, with MSA-2 then the message's MSH-10. An ACK that does not parse leaves the
// sender unable to tell what was answered.
func FuzzACK(f *testing.F) {
	f.Add([]byte(sampleADT))
	f.Add([]byte("MSH|^~\\&|APP\x01|FAC|CONCORD|HIE|20250301080000||ADT^A01|CTL1|P|2.5.1\r"))
	f.Add([]byte("MSH|^~\\&|APP|FAC|CONCORD|HIE|20250301080000||ADT^A01|CTL\\X01\\2|P|2.3\r"))
	f.Add([]byte("MSH|^~\\&|A\xe9|FAC|R|RF|2025||ADT^A01^X\\X7F\\|C\x9f|P\\X00\\|2.5\\X0D\\|||||8859/1\r"))
	f.Add([]byte("MSH*:!$@#*APP*FAC*R*RF*20240101**ORU:R01*ID1*P*2.7\r"))
	f.Add([]byte("MSH|\x00!\"#|")) // a NUL delimiter, once taken for an absent truncation character
	f.Fuzz(func(t *testing.T, b []byte) {
		m, perr := Parse(b)
		h, ok := ReadHeader(b)
		if perr == nil {
			h, ok = m.Header(), true
		}
		if !ok {
			return
		}
		for _, a := range []Ack{Accept(), {Code: AE, Err: DataTypeError, Loc: "MSH-3", Text: "x\x01"}, {Code: AR, Err: ApplicationInternal}} {
			out := BuildACK(h, a, "ACK1", time.Unix(0, 0))
			ack, err := Parse(out)
			if err != nil {
				t.Fatalf("ACK %q does not parse: %v", out, err)
			}
			if perr == nil {
				if got, want := ack.Get("MSA-2"), h.ControlID; got != want {
					t.Fatalf("MSA-2 %q, want the message's MSH-10 %q", got, want)
				}
			}
		}
	})
}
