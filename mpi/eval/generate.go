package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/concord-hie/concord/mpi"
)

// GenOptions control Generate.
type GenOptions struct {
	Seed    uint64
	Persons int // people in the population (default 10,000)
	Members int // member organisations (assigning authorities, default 6)
}

var (
	maleNames = strings.Fields(`JAMES ROBERT JOHN MICHAEL WILLIAM DAVID RICHARD JOSEPH THOMAS CHARLES CHRISTOPHER DANIEL
		MATTHEW ANTHONY MARK DONALD STEVEN PAUL ANDREW JOSHUA KENNETH KEVIN BRIAN GEORGE TIMOTHY RONALD EDWARD
		JASON JEFFREY RYAN JACOB GARY NICHOLAS ERIC JONATHAN STEPHEN LARRY JUSTIN SCOTT BRANDON BENJAMIN SAMUEL
		GREGORY ALEXANDER FRANK PATRICK RAYMOND JACK DENNIS JERRY TYLER AARON JOSE ADAM NATHAN HENRY DOUGLAS
		ZACHARY PETER KYLE ETHAN WALTER NOAH JEREMY CHRISTIAN KEITH ROGER TERRY GERALD HAROLD SEAN AUSTIN CARL
		ARTHUR LAWRENCE DYLAN JESSE JORDAN BRYAN BILLY JOE BRUCE GABRIEL LOGAN ALBERT WILLIE ALAN JUAN WAYNE
		ELIJAH RANDY ROY VINCENT RALPH EUGENE RUSSELL BOBBY MASON PHILIP LOUIS LUIS CARLOS DIEGO WEI HIROSHI`)
	femaleNames = strings.Fields(`MARY PATRICIA JENNIFER LINDA ELIZABETH BARBARA SUSAN JESSICA SARAH KAREN LISA NANCY
		BETTY MARGARET SANDRA ASHLEY KIMBERLY EMILY DONNA MICHELLE CAROL AMANDA DOROTHY MELISSA DEBORAH STEPHANIE
		REBECCA SHARON LAURA CYNTHIA KATHLEEN AMY ANGELA SHIRLEY ANNA BRENDA PAMELA EMMA NICOLE HELEN SAMANTHA
		KATHERINE CHRISTINE DEBRA RACHEL CAROLYN JANET CATHERINE MARIA HEATHER DIANE RUTH JULIE OLIVIA JOYCE
		VIRGINIA VICTORIA KELLY LAUREN CHRISTINA JOAN EVELYN JUDITH MEGAN ANDREA CHERYL HANNAH JACQUELINE MARTHA
		GLORIA TERESA ANN SARA MADISON FRANCES KATHRYN JANICE JEAN ABIGAIL ALICE JULIA JUDY SOPHIA GRACE DENISE
		AMBER DORIS MARILYN DANIELLE BEVERLY ISABELLA THERESA DIANA NATALIE BRITTANY CHARLOTTE MARIE KAYLA ALEXIS
		LORI SOFIA GUADALUPE XIMENA MEI YUKI ZOE`)
	surnames = strings.Fields(`SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS RODRIGUEZ MARTINEZ HERNANDEZ LOPEZ
		GONZALEZ WILSON ANDERSON THOMAS TAYLOR MOORE JACKSON MARTIN LEE PEREZ THOMPSON WHITE HARRIS SANCHEZ CLARK
		RAMIREZ LEWIS ROBINSON WALKER YOUNG ALLEN KING WRIGHT SCOTT TORRES NGUYEN HILL FLORES GREEN ADAMS NELSON
		BAKER HALL RIVERA CAMPBELL MITCHELL CARTER ROBERTS GOMEZ PHILLIPS EVANS TURNER DIAZ PARKER CRUZ EDWARDS
		COLLINS REYES STEWART MORRIS MORALES MURPHY COOK ROGERS GUTIERREZ ORTIZ MORGAN COOPER PETERSON BAILEY
		REED KELLY HOWARD RAMOS KIM COX WARD RICHARDSON WATSON BROOKS CHAVEZ WOOD JAMES BENNETT GRAY MENDOZA
		RUIZ HUGHES PRICE ALVAREZ CASTILLO SANDERS PATEL MYERS LONG ROSS FOSTER JIMENEZ POWELL JENKINS PERRY
		RUSSELL SULLIVAN BELL COLEMAN BUTLER HENDERSON BARNES GONZALES FISHER VASQUEZ SIMMONS ROMERO JORDAN
		PATTERSON ALEXANDER HAMILTON GRAHAM REYNOLDS GRIFFIN WALLACE MORENO WEST COLE HAYES BRYANT HERRERA GIBSON
		ELLIS TRAN MEDINA AGUILAR STEVENS MURRAY FORD CASTRO MARSHALL OWENS HARRISON FERNANDEZ MCDONALD WOODS
		WASHINGTON KENNEDY WELLS VARGAS HENRY CHEN FREEMAN WEBB TUCKER GUZMAN BURNS CRAWFORD OLSON SIMPSON PORTER
		HUNTER GORDON MENDEZ SILVA SHAW SNYDER MASON DIXON MUNOZ HUNT HICKS HOLMES PALMER WAGNER BLACK ROBERTSON
		BOYD ROSE STONE SALAZAR FOX WARREN MILLS MEYER RICE SCHMIDT GARZA DANIELS FERGUSON NICHOLS STEPHENS SOTO
		WEAVER RYAN GARDNER PAYNE GRANT DUNN KELLEY SPENCER HAWKINS ARNOLD PIERCE VAZQUEZ HANSEN PETERS SANTOS
		HART BRADLEY KNIGHT ELLIOTT CUNNINGHAM DUNCAN ARMSTRONG HUDSON CARROLL LANE RILEY ANDREWS ALVARADO RAY
		DELGADO BERRY PERKINS HOFFMAN JOHNSTON MATTHEWS PENA RICHARDS CONTRERAS WILLIS CARPENTER LAWRENCE SANDOVAL
		OBRIEN OCONNOR NAKAMURA KOWALSKI NOWAK SCHNEIDER MUELLER ROSSI ESPOSITO DUBOIS LAURENT KRAUSE`)
	nicknames = map[string][]string{"WILLIAM": {"BILL", "WILL", "BILLY"}, "ROBERT": {"BOB", "ROB", "BOBBY"},
		"RICHARD": {"RICK", "DICK", "RICH"}, "JAMES": {"JIM", "JIMMY"}, "JOSEPH": {"JOE", "JOEY"},
		"MICHAEL": {"MIKE"}, "THOMAS": {"TOM", "TOMMY"}, "CHARLES": {"CHUCK", "CHARLIE"}, "DANIEL": {"DAN", "DANNY"},
		"ANTHONY": {"TONY"}, "CHRISTOPHER": {"CHRIS"}, "MATTHEW": {"MATT"}, "EDWARD": {"ED", "EDDIE", "TED"},
		"ELIZABETH": {"LIZ", "BETH", "BETSY", "LIZZIE"}, "MARGARET": {"PEGGY", "MAGGIE", "MEG"},
		"KATHERINE": {"KATE", "KATHY", "KATIE"}, "CATHERINE": {"CATHY", "KATE"}, "PATRICIA": {"PATTY", "TRISH"},
		"JENNIFER": {"JENNY", "JEN"}, "SUSAN": {"SUE", "SUSIE"}, "DEBORAH": {"DEBBIE", "DEB"},
		"REBECCA": {"BECKY"}, "SAMANTHA": {"SAM"}, "ALEXANDER": {"ALEX"}, "BENJAMIN": {"BEN"}, "NICHOLAS": {"NICK"},
		"JONATHAN": {"JON"}, "STEVEN": {"STEVE"}, "KENNETH": {"KEN", "KENNY"}, "DOUGLAS": {"DOUG"},
		"ABIGAIL": {"ABBY"}, "VICTORIA": {"VICKY", "TORI"}, "CHRISTINE": {"CHRIS", "TINA"}, "PATRICK": {"PAT"}}
	streets  = strings.Fields(`MAIN OAK PINE MAPLE CEDAR ELM WASHINGTON LAKE HILL PARK WALNUT SPRING NORTH RIDGE CHURCH WILLOW MILL CHESTNUT SUNSET JACKSON FRANKLIN HIGHLAND ADAMS LINCOLN MADISON JEFFERSON WOODLAND MEADOW FOREST RIVER CENTER SCHOOL HARBOR BEACON PROSPECT SUMMER WINTER ASH BIRCH DOGWOOD`)
	suffixes = [][2]string{{"STREET", "ST"}, {"AVENUE", "AVE"}, {"ROAD", "RD"}, {"DRIVE", "DR"}, {"LANE", "LN"}, {"COURT", "CT"}, {"PLACE", "PL"}, {"BOULEVARD", "BLVD"}, {"TERRACE", "TER"}, {"WAY", "WAY"}}
	cities   = strings.Fields(`BOSTON WORCESTER SPRINGFIELD CAMBRIDGE LOWELL BROCKTON QUINCY LYNN NEWTON SOMERVILLE FRAMINGHAM HAVERHILL WALTHAM MALDEN BROOKLINE PLYMOUTH MEDFORD TAUNTON CHICOPEE WEYMOUTH REVERE PEABODY METHUEN BARNSTABLE PITTSFIELD`)
	areas    = []string{"617", "508", "781", "978", "413", "774", "857", "339", "351"}
)

type gAddr struct {
	house, street, suf, unit, city, zip string
	phone                               string
}

type gPerson struct {
	given, middle, family, maiden string
	sex                           byte
	y, m, d                       int
	ssn                           string
	cell                          string
	gen                           string // "JR"/"SR"/""
	home, old                     gAddr
	newName                       bool // registrations may use the maiden name and old address
}

type gen struct {
	rng      *rand.Rand
	persons  []gPerson
	kind     map[[2]int32]string
	seenSSN  map[string]bool
	seenCell map[string]bool
}

func (g *gen) zipf(n int) int {
	// a skewed head: the first of 100 values is drawn about 5 % of the time
	return int(float64(n) * math.Pow(g.rng.Float64(), 1.5))
}

var syllables = strings.Fields(`AB AL AN AR BA BEL BER BRO CA CAR DA DEL DOR EL EN ER FA FER GAR GOL HAL HAR
	IN KA KEL KIN LA LAN LEN LO MA MAR MEN MOR NA NEL NOR OL OR PA PEL RA REN RO SA SEL SON STA TA TEN TOR
	VA VAN VEL WA WIL WOR YA ZA ZEL`)

// surname draws from the common-surname list half the time and otherwise makes a rare
// surname from syllables, so that, as in a real region, common names are common but
// most surnames are rare (the top one about 1 % of people).
func (g *gen) surname() string {
	if g.rng.IntN(2) == 0 {
		return surnames[g.zipf(len(surnames))]
	}
	n := 2 + g.rng.IntN(2)
	var b strings.Builder
	for range n {
		b.WriteString(syllables[g.rng.IntN(len(syllables))])
	}
	return b.String()
}

func (g *gen) addr() gAddr {
	s := suffixes[g.rng.IntN(len(suffixes))]
	ci := g.rng.IntN(len(cities))
	a := gAddr{house: fmt.Sprint(1 + g.rng.IntN(999)), street: streets[g.rng.IntN(len(streets))], suf: s[0],
		city: cities[ci], zip: fmt.Sprintf("0%d%03d", 1+ci%9, g.rng.IntN(1000))}
	if g.rng.IntN(5) == 0 {
		a.unit = fmt.Sprint(1 + g.rng.IntN(30))
	}
	if g.rng.IntN(2) == 0 {
		a.phone = g.phone()
	}
	return a
}

func (g *gen) phone() string {
	for {
		p := areas[g.rng.IntN(len(areas))] + fmt.Sprint(2+g.rng.IntN(8)) + fmt.Sprintf("%06d", g.rng.IntN(1000000))
		if !g.seenCell[p] {
			g.seenCell[p] = true
			return p
		}
	}
}

func (g *gen) ssn() string {
	for {
		area := 1 + g.rng.IntN(899)
		if area == 666 {
			continue
		}
		s := fmt.Sprintf("%03d%02d%04d", area, 1+g.rng.IntN(99), 1+g.rng.IntN(9999))
		if mpi.ValidSSN(s) && !g.seenSSN[s] {
			g.seenSSN[s] = true
			return s
		}
	}
}

func (g *gen) person(family string, sex byte, y int, home gAddr) gPerson {
	p := gPerson{family: family, sex: sex, y: y, m: 1 + g.rng.IntN(12), d: 1 + g.rng.IntN(28), home: home}
	p.given, p.middle = g.names(sex)
	if g.rng.IntN(10) < 9 {
		p.ssn = g.ssn()
	}
	if g.rng.IntN(10) < 6 {
		p.cell = g.phone()
	}
	return p
}

func (g *gen) names(sex byte) (string, string) {
	list := maleNames
	if sex == 'F' {
		list = femaleNames
	}
	given := list[g.zipf(len(list))]
	middle := list[g.rng.IntN(len(list))]
	for middle == given {
		middle = list[g.rng.IntN(len(list))]
	}
	return given, middle
}

// usedName reports whether a household member already has the given name.
func (g *gen) usedName(hh []int32, given string) bool {
	for _, p := range hh {
		if g.persons[p].given == given {
			return true
		}
	}
	return false
}

func (g *gen) add(p gPerson) int32 {
	g.persons = append(g.persons, p)
	return int32(len(g.persons) - 1)
}

func (g *gen) relate(a, b int32, kind string) {
	if a > b {
		a, b = b, a
	}
	if old, ok := g.kind[[2]int32{a, b}]; ok && old != "household" {
		return
	}
	g.kind[[2]int32{a, b}] = kind
}

// Generate builds a seeded HIE-style population with ground truth: households with
// spouses, children and twins; Jr/Sr pairs; namesakes (a common name and the same DOB);
// married-name changes with a move; and 1–4 registrations per person at different
// members with nicknames, typos, transposed dates, missing SSN and phone, last-4-only
// SSNs, old addresses, formatting noise and upper-case registrations.
func Generate(opts GenOptions) *Dataset {
	if opts.Persons == 0 {
		opts.Persons = 10_000
	}
	if opts.Members == 0 {
		opts.Members = 6
	}
	g := &gen{rng: rand.New(rand.NewPCG(opts.Seed, 0x686965)), kind: map[[2]int32]string{},
		seenSSN: map[string]bool{}, seenCell: map[string]bool{}}
	for len(g.persons) < opts.Persons {
		home := g.addr()
		fam := g.surname()
		var hh []int32
		switch r := g.rng.IntN(100); {
		case r < 35: // single
			sex := byte("MF"[g.rng.IntN(2)])
			hh = append(hh, g.add(g.person(fam, sex, 1940+g.rng.IntN(65), home)))
		default: // couple, maybe children
			y := 1945 + g.rng.IntN(50)
			dad := g.person(fam, 'M', y, home)
			mom := g.person(fam, 'F', y+g.rng.IntN(7)-3, home)
			if g.rng.IntN(6) == 0 { // married-name change with a move
				mom.maiden = g.surname()
				mom.old = g.addr()
				mom.newName = true
			}
			d := g.add(dad)
			hh = append(hh, d, g.add(mom))
			if r >= 65 {
				kids := 1 + g.rng.IntN(3)
				for k := 0; k < kids; k++ {
					ky := y + 22 + 2*k + g.rng.IntN(14) // siblings at least a year apart
					if ky > 2024 {
						ky = 2024
					}
					sex := byte("MF"[g.rng.IntN(2)])
					kid := g.person(fam, sex, ky, home)
					for g.usedName(hh, kid.given) {
						kid.given, kid.middle = g.names(sex)
					}
					if sex == 'M' && k == 0 && g.rng.IntN(5) == 0 { // Jr/Sr
						kid.given, kid.middle = dad.given, dad.middle
						kid.gen = "JR"
						g.persons[d].gen = "SR"
						kc := g.add(kid)
						g.relate(d, kc, "jrsr")
						hh = append(hh, kc)
						continue
					}
					kc := g.add(kid)
					hh = append(hh, kc)
					if g.rng.IntN(12) == 0 { // twin
						tsex := byte("MF"[g.rng.IntN(2)])
						tw := g.person(fam, tsex, kid.y, home)
						tw.m, tw.d = kid.m, kid.d
						for tw.given == kid.given || g.usedName(hh, tw.given) {
							tw.given, tw.middle = g.names(tsex)
						}
						tc := g.add(tw)
						g.relate(kc, tc, "twin")
						hh = append(hh, tc)
					}
				}
			}
		}
		for x := range hh {
			for y := x + 1; y < len(hh); y++ {
				g.relate(hh[x], hh[y], "household")
			}
		}
		if g.rng.IntN(60) == 0 && len(g.persons) < opts.Persons { // namesake of the first
			src := g.persons[hh[0]]
			ns := g.person(src.family, src.sex, src.y, g.addr())
			ns.given, ns.m, ns.d = src.given, src.m, src.d
			g.relate(hh[0], g.add(ns), "namesake")
		}
	}
	ds := &Dataset{Name: "hie", Kind: func(a, b int32) string {
		if a > b {
			a, b = b, a
		}
		if k, ok := g.kind[[2]int32{a, b}]; ok {
			return k
		}
		return "other"
	}}
	mrn := 100000
	for pi := range g.persons {
		n := 1 + g.rng.IntN(4)
		first := g.rng.IntN(opts.Members)
		for k := 0; k < n && k < opts.Members; k++ {
			member := (first + k) % opts.Members
			mrn += 1 + g.rng.IntN(7)
			in := g.register(&g.persons[pi], member, mrn)
			ds.Inputs = append(ds.Inputs, in)
			ds.Entity = append(ds.Entity, int32(pi))
		}
	}
	// shuffle registration order (arrival order)
	g.rng.Shuffle(len(ds.Inputs), func(a, b int) {
		ds.Inputs[a], ds.Inputs[b] = ds.Inputs[b], ds.Inputs[a]
		ds.Entity[a], ds.Entity[b] = ds.Entity[b], ds.Entity[a]
	})
	return ds
}

func (g *gen) typo(s string) string {
	if len(s) < 3 {
		return s
	}
	b := []byte(s)
	i := 1 + g.rng.IntN(len(b)-1)
	switch g.rng.IntN(3) {
	case 0:
		b[i] = byte('A' + g.rng.IntN(26))
	case 1:
		if i+1 < len(b) {
			b[i], b[i+1] = b[i+1], b[i]
		}
	default:
		b = append(b[:i], b[i+1:]...)
	}
	return string(b)
}

func (g *gen) register(p *gPerson, member, mrn int) mpi.Input {
	r := g.rng
	in := mpi.Input{Source: mpi.Identifier{System: fmt.Sprintf("urn:oid:2.16.840.1.113883.3.%d", 7000+member), Value: fmt.Sprint(mrn)}}
	given, family, home := p.given, p.family, p.home
	if p.newName && r.IntN(2) == 0 {
		family, home = p.maiden, p.old
	}
	if nk, ok := nicknames[given]; ok && r.IntN(8) == 0 {
		given = nk[r.IntN(len(nk))]
	}
	if r.IntN(25) == 0 {
		given = g.typo(given)
	}
	if r.IntN(25) == 0 {
		family = g.typo(family)
	}
	in.Given = []string{given}
	switch r.IntN(5) {
	case 0:
		in.Given = append(in.Given, p.middle)
	case 1:
		in.Given = append(in.Given, p.middle[:1])
	}
	in.Family = family
	if p.gen != "" && r.IntN(3) > 0 {
		in.Suffix = p.gen
	}
	if r.IntN(30) > 0 {
		in.Sex = map[byte]string{'M': "male", 'F': "female"}[p.sex]
	}
	y, m, d := p.y, p.m, p.d
	switch x := r.IntN(100); {
	case x < 2 && d <= 12 && d != m:
		m, d = d, m
	case x < 3:
		d = 1 + (d+r.IntN(8))%28
	}
	in.BirthDate = fmt.Sprintf("%04d-%02d-%02d", y, m, d)
	if p.ssn != "" {
		switch x := r.IntN(100); {
		case x < 55:
			in.SSN = p.ssn[:3] + "-" + p.ssn[3:5] + "-" + p.ssn[5:]
		case x < 65:
			in.SSN = p.ssn[5:]
		}
	}
	phone := p.cell
	if phone == "" || r.IntN(3) == 0 {
		phone = home.phone
	}
	if phone != "" && r.IntN(10) < 7 {
		in.Phone = fmt.Sprintf("(%s) %s-%s", phone[:3], phone[3:6], phone[6:])
	}
	if r.IntN(25) == 0 && p.old.house != "" {
		home = p.old
	}
	suf := home.suf
	for _, s := range suffixes {
		if s[0] == suf && r.IntN(2) == 0 {
			suf = s[1]
		}
	}
	line := home.house + " " + home.street + " " + suf
	if home.unit != "" && r.IntN(4) > 0 {
		line += " Apt " + home.unit
	}
	in.Lines = []string{line}
	in.City, in.State, in.PostalCode = home.city, "MA", home.zip
	if r.IntN(10) == 0 {
		in.PostalCode += fmt.Sprintf("-%04d", r.IntN(10000))
	}
	if r.IntN(10) < 7 { // most systems send mixed case
		in.Given = titleAll(in.Given)
		in.Family = title(in.Family)
		in.Lines = titleAll(in.Lines)
		in.City = title(in.City)
	}
	return in
}

func title(s string) string {
	b := []byte(strings.ToLower(s))
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
		up = c == ' ' || c == '-'
	}
	return string(b)
}

func titleAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = title(s)
	}
	return out
}
