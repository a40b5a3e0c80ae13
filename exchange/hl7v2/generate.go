package hl7v2

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Generate returns n synthetic HL7 v2.5.1 messages for fixtures and benchmarks: about a
// third ADT^A01 (Patient and Encounter) and the rest ORU^R01 lab results (one OBR and 4–12
// OBX each, mostly NM with UCUM units, some CWE and SN). The same seed gives the same
// bytes. Patients are drawn from a pool of about n/3, so patients recur as in a real feed;
// MSH-10 is unique per (seed, index). Every message maps without error. All data is
// fictitious.
func Generate(seed int64, n int) [][]byte {
	r := rand.New(rand.NewPCG(uint64(seed), 0x68_6c_37_76_32)) // "hl7v2"
	pool := max(1, n/3)
	base := time.Date(2024, 1, 1, 8, 0, 0, 0, time.UTC)
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		p := r.IntN(pool)
		at := base.Add(time.Duration(i) * time.Minute)
		var sb strings.Builder
		ts := at.Format("20060102150405-0700")
		ctl := "G" + strconv.FormatInt(seed, 10) + "-" + strconv.Itoa(i)
		adt := i%3 == 0
		typ := "ORU^R01^ORU_R01"
		if adt {
			typ = "ADT^A01^ADT_A01"
		}
		sb.WriteString("MSH|^~\\&|GENEHR|GENFAC^2.16.840.1.113883.3.9999^ISO|CONCORD|HIE|" + ts + "||" + typ + "|" + ctl + "|P|2.5.1\r")
		if adt {
			sb.WriteString("EVN|A01|" + ts + "\r")
		}
		sb.WriteString(genPID(seed, p))
		if adt {
			sb.WriteString("PV1|1|" + []string{"I", "O", "E"}[r.IntN(3)] + "|WARD" + strconv.Itoa(r.IntN(9)+1) + "^" +
				strconv.Itoa(100+r.IntN(50)) + "^" + strconv.Itoa(r.IntN(4)+1) + "^GENFAC||||||||||||||||V" + ctl +
				"^^^GENFAC&2.16.840.1.113883.3.9999&ISO^VN|||||||||||||||||||||||||" + ts + "\r")
		} else {
			panel := genPanels[r.IntN(len(genPanels))]
			sb.WriteString("OBR|1|P" + ctl + "^GENEHR|F" + ctl + "^GENLAB^2.16.840.1.113883.3.9998^ISO|" + panel.code + "^" + panel.name +
				"^LN|||" + ts + "|||||||||||||||" + at.Add(90*time.Minute).Format("20060102150405-0700") + "|||F\r")
			k := 4 + r.IntN(9)
			for j := 0; j < k; j++ {
				a := genAnalytes[r.IntN(len(genAnalytes))]
				set := strconv.Itoa(j + 1)
				switch {
				case j == k-1 && r.IntN(4) == 0:
					sb.WriteString("OBX|" + set + "|CWE|600-7^Bacteria identified^LN||" +
						[]string{"3092008^Staphylococcus aureus^SCT", "112283007^Escherichia coli^SCT", "264868006^No growth^SCT"}[r.IntN(3)] +
						"||||||F|||" + ts + "\r")
				case j == k-1 && r.IntN(4) == 0:
					sb.WriteString("OBX|" + set + "|SN|33914-3^eGFR^LN||>^60|mL/min/{1.73_m2}^mL/min/1.73m2^UCUM|>60||||F|||" + ts + "\r")
				default:
					v := a.low + (a.high-a.low)*(r.Float64()*1.6-0.3)
					flag := "N"
					if v < a.low {
						flag = "L"
					} else if v > a.high {
						flag = "H"
					}
					sb.WriteString("OBX|" + set + "|NM|" + a.code + "^" + a.name + "^LN||" + strconv.FormatFloat(v, 'f', a.digits, 64) +
						"|" + a.unit + "^" + a.unit + "^UCUM|" + strconv.FormatFloat(a.low, 'f', a.digits, 64) + "-" +
						strconv.FormatFloat(a.high, 'f', a.digits, 64) + "|" + flag + "|||F|||" + ts + "\r")
				}
			}
		}
		out = append(out, []byte(sb.String()))
	}
	return out
}

// genPID renders patient p of the seed's pool; the same patient always gets the same PID.
func genPID(seed int64, p int) string {
	r := rand.New(rand.NewPCG(uint64(seed), uint64(p)+1))
	family := genFamily[r.IntN(len(genFamily))]
	given := genGiven[r.IntN(len(genGiven))]
	k := r.IntN(2)
	sex := "MF"[k : k+1]
	dob := time.Date(1930+r.IntN(90), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC).Format("20060102")
	mrn := "M" + strconv.FormatInt(seed, 10) + "-" + strconv.Itoa(p)
	return "PID|1||" + mrn + "^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR||" + family + "^" + given + "^^^^^L||" + dob + "|" + sex +
		"|||" + strconv.Itoa(1+r.IntN(999)) + " " + genStreets[r.IntN(len(genStreets))] + "^^Springfield^IL^627" +
		strconv.Itoa(10+r.IntN(89)) + "^USA^H||^PRN^PH^^1^217^555" + strconv.Itoa(1000+r.IntN(8999)) + "\r"
}

var (
	genFamily  = []string{"Testperson", "Sample", "Example", "Fictive", "Demo", "Placeholder", "Mock", "Synth"}
	genGiven   = []string{"Alex", "Sam", "Robin", "Jordan", "Casey", "Taylor", "Morgan", "Avery", "Riley", "Quinn"}
	genStreets = []string{"Main St", "Oak Ave", "Elm St", "Maple Dr", "Cedar Ln", "Pine Rd"}
	genPanels  = []struct{ code, name string }{
		{"24323-8", "Comprehensive metabolic panel"}, {"58410-2", "CBC panel"}, {"57698-3", "Lipid panel"}, {"24362-6", "Renal function panel"},
	}
	genAnalytes = []struct {
		code, name, unit string
		low, high        float64
		digits           int
	}{
		{"2823-3", "Potassium", "mmol/L", 3.5, 5.1, 1},
		{"2951-2", "Sodium", "mmol/L", 136, 145, 0},
		{"2345-7", "Glucose", "mg/dL", 70, 99, 0},
		{"2160-0", "Creatinine", "mg/dL", 0.6, 1.3, 2},
		{"718-7", "Hemoglobin", "g/dL", 12, 17.5, 1},
		{"6690-2", "Leukocytes", "10*3/uL", 4.5, 11, 1},
		{"777-3", "Platelets", "10*3/uL", 150, 400, 0},
		{"2093-3", "Cholesterol", "mg/dL", 125, 200, 0},
		{"3094-0", "Urea nitrogen", "mg/dL", 7, 20, 0},
	}
)
