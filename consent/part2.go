package consent

import (
	_ "embed"
	"strings"
)

//go:embed data/part2-notice.txt
var part2NoticeFile string

// Part2Notice is Statement 1 of 42 CFR 2.32(a)(1) as revised by the 2024 final rule
// (89 FR 12472), which every disclosure of a Part 2 record made with the patient's
// consent must carry, together with a copy of the consent or a clear explanation of
// its scope (2.32(b)). The text is read from data/part2-notice.txt, which names its
// sources; it is one paragraph of plain ASCII (safe in an HTTP header).
var Part2Notice = parseNotice(part2NoticeFile)

// Part2NoticeURL is where the regulation that requires Part2Notice is published (eCFR,
// 42 CFR 2.32), for a link next to the notice.
const Part2NoticeURL = "https://www.ecfr.gov/current/title-42/chapter-I/subchapter-A/part-2/subpart-C/section-2.32"

// parseNotice drops the file's comment lines and joins the rest with single spaces.
func parseNotice(file string) string {
	var words []string
	for line := range strings.Lines(file) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		words = append(words, strings.Fields(line)...)
	}
	return strings.Join(words, " ")
}

// NeedsPart2Notice reports whether releasing an item with these labels to req's actor
// must carry Part2Notice and the consent (or its summary): the item is a Part 2 record
// and the recipient is not the patient themselves. It errs towards carrying the notice.
func NeedsPart2Notice(labels []string, req Request) bool {
	return labelMask(labels)&labelBit(LabelPart2) != 0 && req.ActorRole != RolePatient
}
