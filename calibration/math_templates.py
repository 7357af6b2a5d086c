"""Math word-problem templates of the default calibration corpus (used by ``generate.py``).

Each template ``t_*(rng) -> (question, steps, answer)`` draws its numbers from ``rng``
and computes every number of its worked solution exactly (``fractions.Fraction``);
symbolic steps are checked inside the template by substituting the answer back.
Names and pronouns are data: ``sources/people.jsonl``. Standard library only.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "sources"


def _load_people() -> list[tuple[str, str]]:
    """``(name, pronoun)`` pairs, in file order (the order matters: ``rng.sample``)."""
    with open(SOURCES / "people.jsonl", encoding="utf-8") as handle:
        return [(r["name"], r["pronoun"]) for r in map(json.loads, handle) if r]


PEOPLE = _load_people()

PRONOUNS = {
    "she": {"subj": "she", "obj": "her", "poss": "her"},
    "he": {"subj": "he", "obj": "him", "poss": "his"},
}


class Person:
    def __init__(self, name: str, gender: str) -> None:
        self.name = name
        self.subj = PRONOUNS[gender]["subj"]
        self.obj = PRONOUNS[gender]["obj"]
        self.poss = PRONOUNS[gender]["poss"]

    @property
    def Subj(self) -> str:  # capitalised pronoun, for the start of a sentence
        return self.subj.capitalize()

    @property
    def Poss(self) -> str:
        return self.poss.capitalize()


def people(rng: random.Random, k: int = 1) -> list[Person]:
    return [Person(n, g) for n, g in rng.sample(PEOPLE, k)]


def fmt(x: Fraction | int) -> str:
    """Format an exact number: integer, terminating decimal, or a/b."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    ax = abs(x)
    for places in range(1, 5):
        scaled = ax * 10**places
        if scaled.denominator == 1:
            whole, frac = divmod(scaled.numerator, 10**places)
            return f"{sign}{whole}.{frac:0{places}d}".rstrip("0")
    return f"{sign}{ax.numerator}/{ax.denominator}"


def usd(x: Fraction | int) -> str:
    x = Fraction(x)
    cents = x * 100
    if cents.denominator != 1:
        raise ValueError(f"not a whole number of cents: {x}")
    if x.denominator == 1:
        return f"${x.numerator}"
    whole, frac = divmod(cents.numerator, 100)
    return f"${whole}.{frac:02d}"


def cents(rng: random.Random, lo: int, hi: int, step: int = 25) -> Fraction:
    """A random price between lo and hi cents, in multiples of ``step`` cents."""
    return Fraction(rng.randrange(lo, hi + 1, step), 100)


def ceil_steps(need: int, per: int, what: str) -> tuple[list[str], int]:
    """Explain rounding up when ``need`` items go into groups of ``per``."""
    full, rem = divmod(need, per)
    if rem == 0:
        return [f"{need} / {per} = {full}, so exactly {full} {what} are needed."], full
    return [
        f"{full} {what} hold only {full} * {per} = {full * per}, which is not enough.",
        f"{full + 1} {what} hold {full + 1} * {per} = {(full + 1) * per}, which is enough, "
        f"so {full + 1} {what} are needed.",
    ], full + 1


def t_change(rng):
    (p,) = people(rng)
    item = rng.choice(
        [
            "notebooks",
            "bags of rice",
            "jars of honey",
            "paintbrushes",
            "packs of batteries",
            "loaves of bread",
            "bottles of juice",
        ]
    )
    n = rng.randint(2, 6)
    price = cents(rng, 125, 900)
    total = n * price
    bill = next(b for b in (10, 20, 50, 100) if b > total)
    change = bill - total
    q = (
        f"{p.name} buys {n} {item} that cost {usd(price)} each. {p.Subj} pays with a "
        f"{usd(bill)} bill. How much change, in dollars, does {p.subj} get back?"
    )
    steps = [
        f"The {item} cost {n} * {usd(price)} = {usd(total)} in total.",
        f"The change is {usd(bill)} - {usd(total)} = {usd(change)}.",
    ]
    return q, steps, change


def t_eggs(rng):
    (p,) = people(rng)
    bird = rng.choice(["hens", "ducks", "quail"])
    laid = rng.randint(12, 30)
    eat = rng.randint(2, 4)
    bake = rng.randint(2, 6)
    price = rng.choice([Fraction(1, 2), Fraction(3, 4), 1, Fraction(3, 2), 2])
    left = laid - eat - bake
    rev = left * price
    q = (
        f"{p.name}'s {bird} lay {laid} eggs per day. {p.Subj} eats {eat} for breakfast every "
        f"morning and uses {bake} each day for baking. {p.Subj} sells the rest at the market "
        f"for {usd(price)} per egg. How many dollars does {p.subj} make every day?"
    )
    steps = [
        f"Eggs left to sell: {laid} - {eat} - {bake} = {left}.",
        f"Money from selling them: {left} * {usd(price)} = {usd(rev)}.",
    ]
    return q, steps, rev


def t_reading(rng):
    (p,) = people(rng)
    a = rng.randint(12, 30)
    d = rng.randint(3, 6)
    pages = rng.randint((a * (d + 2)) // 10 + 2, 48) * 10
    read1 = a * d
    read2 = 2 * a
    total = read1 + read2
    left = pages - total
    q = (
        f"{p.name} is reading a {pages}-page book. {p.Subj} reads {a} pages a day for {d} days, "
        f"and on the next day {p.subj} reads twice as many pages as on each of those days. "
        f"How many pages does {p.subj} still have to read?"
    )
    steps = [
        f"In the first {d} days {p.subj} reads {a} * {d} = {read1} pages.",
        f"On the next day {p.subj} reads 2 * {a} = {read2} pages.",
        f"Altogether {p.subj} has read {read1} + {read2} = {total} pages.",
        f"Pages left: {pages} - {total} = {left}.",
    ]
    return q, steps, left


def t_overtime(rng):
    (p,) = people(rng)
    wage = rng.randint(24, 60) * Fraction(1, 2)
    hours = rng.randint(42, 54)
    reg = 40 * wage
    ot = hours - 40
    rate = wage * Fraction(3, 2)
    ot_pay = ot * rate
    total = reg + ot_pay
    q = (
        f"{p.name} earns {usd(wage)} an hour. For every hour over 40 in a week, {p.subj} is "
        f"paid 1.5 times {p.poss} normal rate. Last week {p.subj} worked {hours} hours. "
        f"How much did {p.subj} earn?"
    )
    steps = [
        f"For the first 40 hours {p.subj} earns 40 * {usd(wage)} = {usd(reg)}.",
        f"{p.Subj} worked {hours} - 40 = {ot} hours of overtime.",
        f"The overtime rate is {usd(wage)} * 1.5 = {usd(rate)} per hour.",
        f"Overtime pay is {ot} * {usd(rate)} = {usd(ot_pay)}.",
        f"Total pay: {usd(reg)} + {usd(ot_pay)} = {usd(total)}.",
    ]
    return q, steps, total


def t_discount_tax(rng):
    (p,) = people(rng)
    item = rng.choice(
        [
            "jacket",
            "bicycle helmet",
            "desk lamp",
            "pair of boots",
            "backpack",
            "coffee maker",
            "tennis racket",
        ]
    )
    price = rng.randint(2, 15) * 20
    d = rng.choice([10, 15, 20, 25, 30])
    t = rng.choice([5, 6, 8, 10])
    disc = Fraction(d, 100) * price
    sale = price - disc
    tax = Fraction(t, 100) * sale
    total = sale + tax
    q = (
        f"A {item} is priced at ${price}. {p.name} buys it during a {d}% off sale, and then "
        f"{t}% sales tax is added to the discounted price. How much does {p.subj} pay?"
    )
    steps = [
        f"The discount is {d}/100 * ${price} = {usd(disc)}.",
        f"The sale price is ${price} - {usd(disc)} = {usd(sale)}.",
        f"The tax is {t}/100 * {usd(sale)} = {usd(tax)}.",
        f"{p.Subj} pays {usd(sale)} + {usd(tax)} = {usd(total)}.",
    ]
    return q, steps, total


def t_class_fraction(rng):
    while True:
        a, b = rng.choice([(1, 3), (2, 5), (3, 5), (1, 4), (3, 8), (4, 7)])
        c = rng.choice([2, 3, 4])
        total = b * rng.randint(3, 8)
        girls = total * a // b
        boys = total - girls
        if boys % c == 0:
            break
    club = rng.choice(
        ["the chess club", "the school choir", "the soccer team", "the robotics club"]
    )
    q = (
        f"There are {total} students in a class, and {a}/{b} of them are girls. 1/{c} of the boys "
        f"are in {club}. How many boys in the class are in {club}?"
    )
    steps = [
        f"The number of girls is {total} * {a} / {b} = {girls}.",
        f"The number of boys is {total} - {girls} = {boys}.",
        f"Boys in {club}: {boys} / {c} = {boys // c}.",
    ]
    return q, steps, boys // c


def t_avg_speed(rng):
    (p,) = people(rng)
    while True:
        s1, t1 = rng.randint(4, 13) * 5, rng.randint(1, 4)
        s2, t2 = rng.randint(4, 13) * 5, rng.randint(1, 3)
        d1, d2 = s1 * t1, s2 * t2
        if (d1 + d2) % (t1 + t2) == 0 and s1 != s2:
            break
    q = (
        f"{p.name} drives for {t1} hours at {s1} miles per hour, then for {t2} hours at {s2} "
        f"miles per hour. What is {p.poss} average speed for the whole trip, in miles per hour?"
    )
    steps = [
        f"First part: {s1} * {t1} = {d1} miles.",
        f"Second part: {s2} * {t2} = {d2} miles.",
        f"Total distance: {d1} + {d2} = {d1 + d2} miles, in {t1} + {t2} = {t1 + t2} hours.",
        f"Average speed: {d1 + d2} / {t1 + t2} = {(d1 + d2) // (t1 + t2)} miles per hour.",
    ]
    return q, steps, (d1 + d2) // (t1 + t2)


def t_test_average(rng):
    (p,) = people(rng)
    while True:
        n = rng.choice([3, 4])
        scores = [rng.randint(68, 97) for _ in range(n)]
        target = rng.choice([80, 82, 85, 88, 90])
        needed = target * (n + 1) - sum(scores)
        if 70 <= needed <= 100:
            break
    listed = ", ".join(str(s) for s in scores[:-1]) + f" and {scores[-1]}"
    q = (
        f"{p.name} scored {listed} on {p.poss} first {n} tests. What score does {p.subj} need "
        f"on the next test to have an average of exactly {target}?"
    )
    steps = [
        f"To average {target} over {n + 1} tests, the total must be {target} * {n + 1} = "
        f"{target * (n + 1)}.",
        f"So far {p.subj} has {' + '.join(str(s) for s in scores)} = {sum(scores)} points.",
        f"{p.Subj} needs {target * (n + 1)} - {sum(scores)} = {needed} on the next test.",
    ]
    return q, steps, needed


def t_recipe(rng):
    (p,) = people(rng)
    batch = rng.choice([12, 16, 18, 24])
    flour = rng.choice([Fraction(3, 2), 2, Fraction(9, 4), Fraction(5, 2), 3])
    k = rng.randint(2, 5)
    want = batch * k
    need = flour * k
    food = rng.choice(["cookies", "muffins", "pancakes", "biscuits"])
    q = (
        f"A recipe makes {batch} {food} and uses {fmt(flour)} cups of flour. {p.name} wants to "
        f"make {want} {food} for a school bake sale. How many cups of flour does {p.subj} need?"
    )
    steps = [
        f"{want} {food} is {want} / {batch} = {k} batches.",
        f"Flour needed: {k} * {fmt(flour)} = {fmt(need)} cups.",
    ]
    return q, steps, need


def t_savings(rng):
    (p,) = people(rng)
    thing = rng.choice(["a new bike", "a guitar", "a tablet", "a telescope", "a pair of skates"])
    goal = rng.randint(12, 40) * 10
    have = rng.randint(2, 9) * 5
    per = rng.randint(7, 25)
    need = goal - have
    steps = [f"{p.Subj} still needs ${goal} - ${have} = ${need}."]
    weeks, rem = divmod(need, per)
    if rem == 0:
        steps.append(f"{need} / {per} = {weeks}, so it takes exactly {weeks} weeks.")
        ans = weeks
    else:
        steps.append(
            f"After {weeks} weeks {p.subj} has saved {weeks} * {per} = {weeks * per} "
            f"dollars, which is not enough."
        )
        steps.append(
            f"After {weeks + 1} weeks {p.subj} has saved {weeks + 1} * {per} = "
            f"{(weeks + 1) * per} dollars, which is enough."
        )
        ans = weeks + 1
    q = (
        f"{p.name} wants to buy {thing} that costs ${goal}. {p.Subj} has already saved ${have} "
        f"and saves ${per} more each week. How many weeks will it take until {p.subj} can "
        f"afford it?"
    )
    return q, steps, ans


def t_ages(rng):
    a, b = people(rng, 2)
    young = rng.randint(6, 30)
    k = rng.randint(2, 12)
    n = rng.randint(2, 10)
    s = (young + n) + (young + k + n)
    q = (
        f"{a.name} is {k} years older than {b.name}. In {n} years, the sum of their ages will "
        f"be {s}. How old is {b.name} now?"
    )
    steps = [
        f"Let x be {b.name}'s age now, so {a.name} is x + {k}.",
        f"In {n} years they will be x + {n} and x + {k + n} years old.",
        f"Their sum is 2x + {k + 2 * n} = {s}.",
        f"So 2x = {s} - {k + 2 * n} = {2 * young}, and x = {2 * young} / 2 = {young}.",
    ]
    assert (young + n) + (young + k + n) == s
    return q, steps, young


def t_linear(rng):
    a = rng.randint(3, 12)
    x = rng.randint(4, 25)
    b = rng.randint(5, 60)
    c = a * x + b
    form = rng.choice(
        [
            f"When a number is multiplied by {a} and then {b} is added, the result is {c}. "
            "What is the number?",
            f"Solve for x: {a}x + {b} = {c}.",
            f"A gym charges a ${b} sign-up fee plus ${a} per class. A member has paid ${c} in total. "
            "How many classes has the member taken?",
        ]
    )
    steps = [
        f"Write the equation {a}x + {b} = {c}.",
        f"Subtract {b} from both sides: {a}x = {c} - {b} = {a * x}.",
        f"Divide by {a}: x = {a * x} / {a} = {x}.",
    ]
    assert a * x + b == c
    return form, steps, x


def t_fence(rng):
    (p,) = people(rng)
    length = rng.randint(8, 40)
    width = rng.randint(5, length)
    gate = rng.choice([3, 4, 5])
    price = rng.choice([Fraction(5, 2), 3, 4, Fraction(9, 2), 6, Fraction(15, 2)])
    per = 2 * (length + width)
    fence = per - gate
    cost = fence * price
    q = (
        f"{p.name} wants to fence a rectangular garden that is {length} feet long and {width} "
        f"feet wide. {p.Subj} will leave a {gate}-foot gap for a gate that is already built. "
        f"Fencing costs {usd(price)} per foot. How much will the fencing cost?"
    )
    steps = [
        f"The perimeter is 2 * ({length} + {width}) = {per} feet.",
        f"Without the gate, {per} - {gate} = {fence} feet of fencing are needed.",
        f"The cost is {fence} * {usd(price)} = {usd(cost)}.",
    ]
    return q, steps, cost


def t_ribbon(rng):
    (p,) = people(rng)
    piece = rng.choice([15, 20, 25, 30, 40, 50])
    count = rng.randint(8, 30)
    total_cm = piece * count
    metres = Fraction(total_cm, 100)
    while (metres * 10).denominator != 1:
        count += 1
        total_cm = piece * count
        metres = Fraction(total_cm, 100)
    thing = rng.choice(["ribbon", "rope", "strip of fabric", "roll of tape"])
    q = (
        f"{p.name} has a {thing} that is {fmt(metres)} meters long. {p.Subj} cuts it into pieces "
        f"that are each {piece} centimeters long. How many pieces does {p.subj} get?"
    )
    steps = [
        f"One meter is 100 centimeters, so the {thing} is {fmt(metres)} * 100 = {total_cm} cm.",
        f"Number of pieces: {total_cm} / {piece} = {count}.",
    ]
    return q, steps, count


def t_practice_hours(rng):
    (p,) = people(rng)
    activity = rng.choice(["piano", "violin", "basketball", "swimming", "chess", "drawing"])
    while True:
        wd = rng.choice([20, 25, 30, 40, 45, 50, 60])
        we = rng.choice([60, 75, 90, 120])
        total = 5 * wd + 2 * we
        if total % 15 == 0:
            break
    hours = Fraction(total, 60)
    q = (
        f"{p.name} practices {activity} for {wd} minutes on each weekday and {we} minutes on "
        f"each day of the weekend. How many hours does {p.subj} practice in one week?"
    )
    steps = [
        f"Weekdays: 5 * {wd} = {5 * wd} minutes.",
        f"Weekend: 2 * {we} = {2 * we} minutes.",
        f"Total: {5 * wd} + {2 * we} = {total} minutes.",
        f"In hours: {total} / 60 = {fmt(hours)} hours.",
    ]
    return q, steps, hours


def t_share_remainder(rng):
    (p,) = people(rng)
    k = rng.randint(3, 9)
    each = rng.randint(4, 20)
    rem = rng.randint(1, k - 1)
    total = k * each + rem
    thing = rng.choice(["stickers", "marbles", "trading cards", "pencils", "seashells"])
    q = (
        f"{p.name} has {total} {thing}. {p.Subj} shares them equally among {k} friends, giving "
        f"each friend as many as possible, and keeps the ones that are left over. How many "
        f"{thing} does {p.name} keep?"
    )
    steps = [
        f"Each friend can get {each} {thing}, because {k} * {each} = {k * each} and "
        f"{k} * {each + 1} = {k * (each + 1)} is more than {total}.",
        f"{p.name} keeps {total} - {k * each} = {rem}.",
    ]
    return q, steps, rem


def t_tickets(rng):
    (p,) = people(rng)
    adult = rng.randint(9, 24)
    child = rng.randint(4, adult - 2)
    na = rng.randint(1, 4)
    nc = rng.randint(1, 5)
    parking = rng.choice([5, 8, 10, 12])
    place = rng.choice(["the zoo", "an aquarium", "a science museum", "a water park"])
    ta, tc = na * adult, nc * child
    total = ta + tc + parking
    q = (
        f"{p.name} takes {p.poss} family to {place}. Adult tickets cost ${adult} and children's "
        f"tickets cost ${child}. They buy {na} adult and {nc} child tickets, and parking costs "
        f"${parking}. How much do they spend in total?"
    )
    steps = [
        f"Adult tickets: {na} * ${adult} = ${ta}.",
        f"Child tickets: {nc} * ${child} = ${tc}.",
        f"Total with parking: ${ta} + ${tc} + ${parking} = ${total}.",
    ]
    return q, steps, total


def t_growth(rng):
    start = rng.randint(2, 9) * 10000
    r = rng.choice([2, 3, 4, 5, 10])
    place = rng.choice(["A town", "A city", "A county", "An island"])
    g1 = Fraction(r, 100) * start
    y1 = start + g1
    g2 = Fraction(r, 100) * y1
    y2 = y1 + g2
    q = (
        f"{place} has {start} residents. Its population grows by {r}% each year. How many "
        f"residents will it have after 2 years?"
    )
    steps = [
        f"Growth in year 1: {r}/100 * {start} = {fmt(g1)}, giving {start} + {fmt(g1)} = "
        f"{fmt(y1)} residents.",
        f"Growth in year 2: {r}/100 * {fmt(y1)} = {fmt(g2)}, giving {fmt(y1)} + {fmt(g2)} = "
        f"{fmt(y2)} residents.",
    ]
    return q, steps, y2


def t_pizza(rng):
    a, b = people(rng, 2)
    pizzas = rng.randint(2, 5)
    slices = pizzas * 8
    while slices % 4 != 0 or (slices * 3 // 4) % 3 != 0:
        pizzas += 1
        slices = pizzas * 8
    first = slices // 4
    rest = slices - first
    second = rest // 3
    left = rest - second
    q = (
        f"{a.name} orders {pizzas} pizzas, each cut into 8 slices. {a.Subj} and {a.poss} friends "
        f"eat 1/4 of the slices during a movie, and then {b.name} eats 1/3 of the slices that "
        f"remain. How many slices are left?"
    )
    steps = [
        f"There are {pizzas} * 8 = {slices} slices.",
        f"During the movie they eat {slices} / 4 = {first}, leaving {slices} - {first} = {rest}.",
        f"{b.name} eats {rest} / 3 = {second}, leaving {rest} - {second} = {left}.",
    ]
    return q, steps, left


def t_garden(rng):
    (p,) = people(rng)
    rows = rng.randint(3, 9)
    per_row = rng.randint(4, 12)
    veg = rng.choice(
        [
            ("tomato", "tomatoes"),
            ("pepper", "peppers"),
            ("zucchini", "zucchinis"),
            ("eggplant", "eggplants"),
        ]
    )
    each = rng.randint(5, 15)
    lost = rng.randint(2, rows * per_row // 3)
    plants = rows * per_row
    alive = plants - lost
    total = alive * each
    q = (
        f"{p.name} planted {rows} rows of {veg[0]} plants with {per_row} plants in each row. "
        f"Rabbits destroyed {lost} of the plants. Each remaining plant produced {each} {veg[1]}. "
        f"How many {veg[1]} did {p.name} harvest?"
    )
    steps = [
        f"{p.Subj} planted {rows} * {per_row} = {plants} plants.",
        f"After the rabbits, {plants} - {lost} = {alive} plants were left.",
        f"The harvest was {alive} * {each} = {total} {veg[1]}.",
    ]
    return q, steps, total


def t_parking(rng):
    (p,) = people(rng)
    first = rng.choice([3, 4, 5, 6])
    extra = rng.choice([Fraction(3, 2), 2, Fraction(5, 2), 3])
    hours = rng.randint(3, 9)
    more = hours - 1
    cost_more = more * extra
    total = first + cost_more
    q = (
        f"A parking garage charges ${first} for the first hour and {usd(extra)} for each "
        f"additional hour. {p.name} parks there for {hours} hours. How much does {p.subj} pay?"
    )
    steps = [
        f"After the first hour there are {hours} - 1 = {more} more hours.",
        f"Those cost {more} * {usd(extra)} = {usd(cost_more)}.",
        f"Total: ${first} + {usd(cost_more)} = {usd(total)}.",
    ]
    return q, steps, total


def t_commission(rng):
    (p,) = people(rng)
    base = rng.randint(12, 30) * 100
    c = rng.choice([2, 3, 4, 5, 6, 8])
    sales = rng.randint(10, 60) * 500
    comm = Fraction(c, 100) * sales
    total = base + comm
    q = (
        f"{p.name} works in sales. {p.Subj} earns a base salary of ${base} per month plus a {c}% "
        f"commission on everything {p.subj} sells. This month {p.subj} sold ${sales} worth of "
        f"furniture. What are {p.poss} total earnings for the month?"
    )
    steps = [
        f"Commission: {c}/100 * ${sales} = {usd(comm)}.",
        f"Total earnings: ${base} + {usd(comm)} = {usd(total)}.",
    ]
    return q, steps, total


def t_consecutive(rng):
    even = rng.random() < 0.5
    x = rng.randint(5, 60) * (2 if even else 1)
    step = 2 if even else 1
    s = x + (x + step) + (x + 2 * step)
    kind = "consecutive even integers" if even else "consecutive integers"
    q = f"The sum of three {kind} is {s}. What is the largest of the three?"
    steps = [
        f"Call the smallest one n. The numbers are n, n + {step} and n + {2 * step}.",
        f"Their sum is 3n + {3 * step} = {s}.",
        f"So 3n = {s} - {3 * step} = {3 * x}, and n = {3 * x} / 3 = {x}.",
        f"The largest is {x} + {2 * step} = {x + 2 * step}.",
    ]
    assert x + (x + step) + (x + 2 * step) == s
    return q, steps, x + 2 * step


def t_two_items(rng):
    (p,) = people(rng)
    cheap_name, dear_name = rng.choice(
        [
            ("pens", "notebooks"),
            ("apples", "mangoes"),
            ("postcards", "posters"),
            ("bagels", "sandwiches"),
        ]
    )
    cheap = rng.randint(1, 4)
    dear = cheap + rng.randint(1, 5)
    n = rng.randint(8, 25)
    k = rng.randint(1, n - 1)
    total = (n - k) * cheap + k * dear
    q = (
        f"{p.name} bought {n} items, all of them either {cheap_name} at ${cheap} each or "
        f"{dear_name} at ${dear} each. {p.Subj} spent ${total} altogether. How many "
        f"{dear_name} did {p.subj} buy?"
    )
    steps = [
        f"If all {n} items were {cheap_name}, they would cost {n} * {cheap} = {n * cheap} dollars.",
        f"The actual cost is {total} - {n * cheap} = {total - n * cheap} dollars more.",
        f"Each of the {dear_name} costs {dear} - {cheap} = {dear - cheap} dollars more than one of "
        f"the {cheap_name}.",
        f"So the number of {dear_name} is {total - n * cheap} / {dear - cheap} = {k}.",
    ]
    assert (n - k) * cheap + k * dear == total
    return q, steps, k


def t_ratio(rng):
    a, b = rng.choice([(2, 3), (3, 5), (1, 4), (4, 5), (2, 7), (3, 4)])
    unit = rng.randint(3, 15)
    total = (a + b) * unit
    place = rng.choice(
        [
            ("cats", "dogs", "an animal shelter"),
            ("red", "blue", "a bag of beads"),
            ("fiction", "nonfiction", "a classroom library"),
        ]
    )
    q = (
        f"In {place[2]}, the ratio of {place[0]} to {place[1]} is {a}:{b}. There are {total} in "
        f"all. How many more {place[1]} than {place[0]} are there?"
    )
    steps = [
        f"The ratio has {a} + {b} = {a + b} parts.",
        f"Each part is {total} / {a + b} = {unit}.",
        f"{place[1].capitalize()}: {b} * {unit} = {b * unit}; {place[0]}: {a} * {unit} = "
        f"{a * unit}.",
        f"The difference is {b * unit} - {a * unit} = {(b - a) * unit}.",
    ]
    return q, steps, (b - a) * unit


def t_interest(rng):
    (p,) = people(rng)
    principal = rng.randint(4, 40) * 250
    r = rng.choice([2, 3, 4, 5, 6])
    years = rng.randint(2, 6)
    per_year = Fraction(r, 100) * principal
    interest = per_year * years
    total = principal + interest
    q = (
        f"{p.name} puts ${principal} in a savings account that pays {r}% simple interest per "
        f"year. How much money is in the account after {years} years?"
    )
    steps = [
        f"Interest each year: {r}/100 * ${principal} = {usd(per_year)}.",
        f"Interest over {years} years: {years} * {usd(per_year)} = {usd(interest)}.",
        f"Balance: ${principal} + {usd(interest)} = {usd(total)}.",
    ]
    return q, steps, total


def t_fuel(rng):
    (p,) = people(rng)
    mpg = rng.choice([20, 24, 25, 30, 32, 35, 40])
    gallons = rng.randint(3, 12)
    one_way = mpg * gallons
    if one_way % 2:
        one_way += mpg
        gallons += 1
    price = cents(rng, 300, 480, 10)
    total_miles = 2 * one_way
    total_gal = total_miles // mpg
    cost = total_gal * price
    q = (
        f"{p.name}'s car goes {mpg} miles on a gallon of gas. {p.Subj} drives to a city "
        f"{one_way} miles away and back again. Gas costs {usd(price)} per gallon. How much does "
        f"{p.subj} spend on gas for the round trip?"
    )
    steps = [
        f"The round trip is 2 * {one_way} = {total_miles} miles.",
        f"That uses {total_miles} / {mpg} = {total_gal} gallons.",
        f"The gas costs {total_gal} * {usd(price)} = {usd(cost)}.",
    ]
    return q, steps, cost


def t_ounces(rng):
    (p,) = people(rng)
    pounds = rng.randint(3, 12)
    per = rng.choice([6, 7, 9, 10, 12, 14])
    total = pounds * 16
    loaves, left = divmod(total, per)
    q = (
        f"{p.name} has {pounds} pounds of flour. Each loaf of bread uses {per} ounces of flour. "
        f"After baking as many loaves as possible, how many ounces of flour are left? "
        f"(1 pound = 16 ounces)"
    )
    steps = [
        f"{pounds} pounds is {pounds} * 16 = {total} ounces.",
        f"{loaves} loaves use {loaves} * {per} = {loaves * per} ounces, and one more loaf "
        f"would need {loaves + 1} * {per} = {(loaves + 1) * per}, which is too much.",
        f"Flour left: {total} - {loaves * per} = {left} ounces.",
    ]
    return q, steps, left


def t_temperature(rng):
    start = rng.randint(50, 80)
    drop = rng.randint(2, 5)
    h1 = rng.randint(2, 6)
    rise = rng.randint(1, 4)
    h2 = rng.randint(2, 5)
    fell = drop * h1
    rose = rise * h2
    end = start - fell + rose
    city = rng.choice(["Denver", "a mountain village", "the desert camp", "the harbor town"])
    q = (
        f"At 6 p.m. the temperature in {city} was {start} degrees Fahrenheit. It fell {drop} "
        f"degrees every hour for {h1} hours, then rose {rise} degrees every hour for {h2} hours. "
        f"What was the temperature then?"
    )
    steps = [
        f"It fell {drop} * {h1} = {fell} degrees, to {start} - {fell} = {start - fell}.",
        f"Then it rose {rise} * {h2} = {rose} degrees, to {start - fell} + {rose} = {end}.",
    ]
    return q, steps, end


def t_party_pizza(rng):
    (p,) = people(rng)
    guests = rng.randint(9, 30)
    each = rng.randint(2, 4)
    per = rng.choice([8, 10, 12])
    need = (guests + 1) * each
    q = (
        f"{p.name} is having a party for {guests} guests. {p.Subj} expects every guest, and "
        f"{p.obj}self, to eat {each} slices of pizza. Each pizza has {per} slices. How many "
        f"pizzas should {p.subj} order?"
    )
    steps = [f"With {p.obj}self there are {guests} + 1 = {guests + 1} people."]
    steps.append(f"They need {guests + 1} * {each} = {need} slices.")
    more, ans = ceil_steps(need, per, "pizzas")
    return q, steps + more, ans


def t_buses(rng):
    students = rng.randint(60, 300)
    teachers = rng.randint(4, 16)
    seats = rng.choice([30, 36, 40, 44, 48, 52])
    people_ = students + teachers
    school = rng.choice(
        [
            "Oak Hill Middle School",
            "Riverside Elementary",
            "Lincoln High School",
            "Maple Grove Academy",
        ]
    )
    q = (
        f"{school} is taking {students} students and {teachers} teachers on a field trip. Each "
        f"bus holds {seats} people. How many buses are needed?"
    )
    steps = [f"There are {students} + {teachers} = {people_} people."]
    more, ans = ceil_steps(people_, seats, "buses")
    return q, steps + more, ans


def t_pipes(rng):
    a, b, c = rng.choice(
        [
            (3, 6, 2),
            (4, 12, 3),
            (6, 12, 4),
            (10, 15, 6),
            (12, 24, 8),
            (20, 30, 12),
            (6, 3, 2),
            (5, 20, 4),
            (8, 24, 6),
            (9, 18, 6),
        ]
    )
    assert Fraction(1, a) + Fraction(1, b) == Fraction(1, c)
    thing = rng.choice(["A pool", "A water tank", "A rain barrel", "A fish pond"])
    q = (
        f"{thing} can be filled by one hose in {a} hours and by a second hose in {b} hours. How "
        f"many hours does it take to fill it if both hoses are used together?"
    )
    steps = [
        f"In one hour the first hose fills 1/{a} and the second fills 1/{b}.",
        f"Together they fill 1/{a} + 1/{b} = 1/{c} per hour.",
        f"So it takes {c} hours.",
    ]
    return q, steps, c


def t_marbles(rng):
    a, b, c = people(rng, 3)
    while True:
        start = rng.randint(4, 20) * 12
        give1 = start // 4
        rest = start - give1
        give2 = rest // 3
        rest2 = rest - give2
        buy = rng.randint(5, 30)
        if give1 * 4 == start and give2 * 3 == rest:
            break
    q = (
        f"{a.name} had {start} marbles. {a.Subj} gave 1/4 of them to {b.name}, then gave 1/3 of "
        f"the marbles {a.subj} still had to {c.name}. Later {a.subj} bought {buy} more. How many "
        f"marbles does {a.name} have now?"
    )
    steps = [
        f"{b.name} got {start} / 4 = {give1}, leaving {start} - {give1} = {rest}.",
        f"{c.name} got {rest} / 3 = {give2}, leaving {rest} - {give2} = {rest2}.",
        f"After buying more: {rest2} + {buy} = {rest2 + buy}.",
    ]
    return q, steps, rest2 + buy


def t_commute(rng):
    while True:
        total = rng.randint(8, 40) * 20
        bus_pct = rng.choice([20, 25, 30, 40, 45, 60])
        bus = total * bus_pct // 100
        rest = total - bus
        if total * bus_pct % 100 == 0 and rest % 4 == 0:
            break
    walk = rest // 4
    driven = rest - walk
    q = (
        f"A school has {total} students. {bus_pct}% of them take the bus, 1/4 of the remaining "
        f"students walk, and the rest are driven to school. How many students are driven?"
    )
    steps = [
        f"Bus riders: {bus_pct}/100 * {total} = {bus}.",
        f"Remaining: {total} - {bus} = {rest}.",
        f"Walkers: {rest} / 4 = {walk}.",
        f"Driven: {rest} - {walk} = {driven}.",
    ]
    return q, steps, driven


def t_square_fence(rng):
    (p,) = people(rng)
    side = rng.randint(5, 30)
    area = side * side
    price = rng.choice([3, 4, 5, Fraction(11, 2), 7, 8])
    per = 4 * side
    cost = per * price
    q = (
        f"A square patio has an area of {area} square meters. {p.name} wants to put a border "
        f"around its edge that costs {usd(price)} per meter. How much will the border cost?"
    )
    steps = [
        f"Since {side} * {side} = {area}, each side is {side} meters long.",
        f"The perimeter is 4 * {side} = {per} meters.",
        f"The border costs {per} * {usd(price)} = {usd(cost)}.",
    ]
    return q, steps, cost


def t_coins(rng):
    (p,) = people(rng)
    q_ = rng.randint(3, 25)
    d = rng.randint(2, 30)
    n = rng.randint(1, 20)
    vq, vd, vn = 25 * q_, 10 * d, 5 * n
    total = vq + vd + vn
    q = (
        f"{p.name}'s piggy bank holds {q_} quarters, {d} dimes and {n} nickels. How much money "
        f"is in the piggy bank, in dollars?"
    )
    steps = [
        f"Quarters: {q_} * 25 = {vq} cents.",
        f"Dimes: {d} * 10 = {vd} cents.",
        f"Nickels: {n} * 5 = {vn} cents.",
        f"Total: {vq} + {vd} + {vn} = {total} cents, which is {total} / 100 = "
        f"{fmt(Fraction(total, 100))} dollars.",
    ]
    return q, steps, Fraction(total, 100)


def t_inventory(rng):
    start = rng.randint(40, 200)
    boxes = rng.randint(3, 10)
    per_box = rng.choice([12, 20, 24, 36, 48])
    sold_day = rng.randint(10, 40)
    days = rng.randint(3, 7)
    item = rng.choice(["cans of soup", "bags of coffee", "boxes of cereal", "bottles of shampoo"])
    recv = boxes * per_box
    have = start + recv
    sold = sold_day * days
    while sold > have:
        days -= 1
        sold = sold_day * days
    left = have - sold
    q = (
        f"A grocery store has {start} {item} in stock. It receives {boxes} cases with {per_box} "
        f"in each case, and then sells {sold_day} every day for {days} days. How many {item} "
        f"are left?"
    )
    steps = [
        f"The delivery adds {boxes} * {per_box} = {recv}, for {start} + {recv} = {have}.",
        f"Over {days} days the store sells {sold_day} * {days} = {sold}.",
        f"Left in stock: {have} - {sold} = {left}.",
    ]
    return q, steps, left


def t_unit_price(rng):
    (p,) = people(rng)
    ca, cb = rng.sample([18, 20, 22, 24, 25, 28, 30, 32, 35, 40], 2)
    sa, sb = rng.choice([12, 16, 20]), rng.choice([24, 32, 40])
    pa, pb = Fraction(ca * sa, 100), Fraction(cb * sb, 100)
    buy = rng.choice([48, 80, 96, 120, 160])
    uc_a, uc_b = Fraction(ca, 100), Fraction(cb, 100)
    cheap, dear = sorted([uc_a, uc_b])
    saving = buy * dear - buy * cheap
    thing = rng.choice(["peanut butter", "laundry soap", "olive oil", "yogurt"])
    q = (
        f"At the store, a {sa}-ounce jar of Brand A {thing} costs {usd(pa)}, and a {sb}-ounce "
        f"jar of Brand B costs {usd(pb)}. {p.name} needs {buy} ounces. How much does {p.subj} "
        f"save by buying the brand with the lower price per ounce instead of the other one?"
    )
    steps = [
        f"Brand A costs {usd(pa)} / {sa} = {usd(uc_a)} per ounce.",
        f"Brand B costs {usd(pb)} / {sb} = {usd(uc_b)} per ounce.",
        f"At the higher price, {buy} ounces cost {buy} * {usd(dear)} = {usd(buy * dear)}; at the "
        f"lower price they cost {buy} * {usd(cheap)} = {usd(buy * cheap)}.",
        f"The saving is {usd(buy * dear)} - {usd(buy * cheap)} = {usd(saving)}.",
    ]
    return q, steps, saving


def t_train_minutes(rng):
    h0 = rng.randint(6, 10)
    m0 = rng.choice([0, 5, 10, 15, 20, 25, 30, 35, 40, 45])
    dur_h = rng.randint(1, 4)
    dur_m = rng.choice([5, 10, 15, 20, 25, 35, 40, 50])
    end_total = h0 * 60 + m0 + dur_h * 60 + dur_m
    h1, m1 = divmod(end_total, 60)
    mid_h = h0 + dur_h
    extra = h1 * 60 + m1 - (mid_h * 60 + m0)
    minutes = dur_h * 60 + extra
    city = rng.choice(["Lyon", "Osaka", "Chicago", "Leeds", "Porto", "Nairobi"])
    q = (
        f"A train to {city} leaves at {h0}:{m0:02d} a.m. and arrives at {h1 if h1 <= 12 else h1 - 12}:"
        f"{m1:02d} {'a.m.' if h1 < 12 else 'p.m.'} the same day. How many minutes does the "
        f"journey take?"
    )
    steps = [
        f"From {h0}:{m0:02d} to {mid_h if mid_h <= 12 else mid_h - 12}:{m0:02d} is {dur_h} hours, "
        f"which is {dur_h} * 60 = {dur_h * 60} minutes.",
        f"From there to the arrival time is {extra} more minutes.",
        f"The journey takes {dur_h * 60} + {extra} = {minutes} minutes.",
    ]
    assert minutes == dur_h * 60 + dur_m
    return q, steps, minutes


def t_pace(rng):
    (p,) = people(rng)
    km = rng.randint(3, 10)
    pace = rng.randint(4, 8)
    race = rng.choice([15, 21, 25, 30, 42])
    q = (
        f"{p.name} runs {km} kilometers in {km * pace} minutes. At the same pace, how many "
        f"minutes would it take {p.obj} to run {race} kilometers?"
    )
    steps = [
        f"{p.Poss} pace is {km * pace} / {km} = {pace} minutes per kilometer.",
        f"For {race} kilometers: {race} * {pace} = {race * pace} minutes.",
    ]
    return q, steps, race * pace


def t_spent_fractions(rng):
    (p,) = people(rng)
    f1 = rng.choice([Fraction(1, 5), Fraction(2, 5), Fraction(1, 3), Fraction(1, 4)])
    f2 = rng.choice([Fraction(1, 4), Fraction(1, 3), Fraction(1, 2)])
    keep = (1 - f1) * (1 - f2)
    start = keep.denominator * rng.randint(2, 12) * 5
    left = keep * start
    q = (
        f"{p.name} spent {f1} of {p.poss} money on a jacket and then {f2} of what was left on "
        f"shoes. {p.Subj} has {usd(left)} left. How much money did {p.subj} have at the start?"
    )
    steps = [
        f"After the jacket {p.subj} had 1 - {f1} = {1 - f1} of {p.poss} money.",
        f"After the shoes {p.subj} kept 1 - {f2} = {1 - f2} of that, which is "
        f"{1 - f2} * {1 - f1} = {keep} of the original amount.",
        f"So the original amount is {fmt(left)} * {keep.denominator} / {keep.numerator} = "
        f"{fmt(start)} dollars.",
    ]
    assert (1 - f1) * (1 - f2) * start == left
    return q, steps, start


def t_reverse_discount(rng):
    (p,) = people(rng)
    d = rng.choice([10, 20, 25, 40, 50])
    orig = rng.randint(3, 30) * 20
    sale = orig * (100 - d) // 100
    item = rng.choice(["sofa", "winter coat", "printer", "suitcase", "camera"])
    q = (
        f"{p.name} bought a {item} on sale for ${sale}. The sale price was {d}% off the "
        f"original price. What was the original price?"
    )
    steps = [
        f"The sale price is 100 - {d} = {100 - d} percent of the original price.",
        f"Original price: {sale} * 100 / {100 - d} = {orig} dollars.",
    ]
    assert orig * (100 - d) == sale * 100
    return q, steps, orig


def t_cups(rng):
    litres = Fraction(rng.randint(30, 200), 10)
    cup = rng.choice([150, 200, 250, 300, 330])
    ml = litres * 1000
    full, rem = divmod(int(ml), cup)
    thing = rng.choice(["A water cooler", "A punch bowl", "A soup pot", "A lemonade jug"])
    q = (
        f"{thing} holds {fmt(litres)} liters. How many full {cup}-milliliter cups can be poured "
        f"from it?"
    )
    steps = [f"{fmt(litres)} liters is {fmt(litres)} * 1000 = {fmt(ml)} milliliters."]
    if rem == 0:
        steps.append(f"{fmt(ml)} / {cup} = {full} cups exactly.")
    else:
        steps.append(
            f"{full} cups use {full} * {cup} = {full * cup} mL, and {full + 1} cups would "
            f"need {full + 1} * {cup} = {(full + 1) * cup} mL, which is more than "
            f"{fmt(ml)}."
        )
        steps.append(f"So {full} full cups can be poured.")
    return q, steps, full


def t_speed_units(rng):
    (p,) = people(rng)
    kmh = rng.choice([12, 15, 18, 24, 30, 36, 42, 48, 54])
    mins = rng.randint(2, 15)
    m_per_h = kmh * 1000
    m_per_min = m_per_h // 60
    total = m_per_min * mins
    vehicle = rng.choice(["bicycle", "scooter", "rowing boat", "horse"])
    q = (
        f"{p.name} travels on a {vehicle} at a steady {kmh} kilometers per hour. How many meters "
        f"does {p.subj} travel in {mins} minutes?"
    )
    steps = [
        f"{kmh} km per hour is {kmh} * 1000 = {m_per_h} meters per hour.",
        f"That is {m_per_h} / 60 = {m_per_min} meters per minute.",
        f"In {mins} minutes: {m_per_min} * {mins} = {total} meters.",
    ]
    assert m_per_h % 60 == 0
    return q, steps, total


def t_average_rainfall(rng):
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    while True:
        values = [rng.randint(0, 30) for _ in days]
        if sum(values) % len(days) == 0 and sum(values) > 0:
            break
    parts = ", ".join(f"{v} mm on {d}" for v, d in zip(values, days))
    q = (
        f"A weather station recorded this rainfall: {parts}. What was the mean daily rainfall "
        f"for those five days, in millimeters?"
    )
    steps = [
        f"Total rainfall: {' + '.join(str(v) for v in values)} = {sum(values)} mm.",
        f"Mean: {sum(values)} / 5 = {sum(values) // 5} mm per day.",
    ]
    return q, steps, sum(values) // 5


def t_bulk_packs(rng):
    (p,) = people(rng)
    guests = rng.randint(20, 80)
    per_guest = rng.randint(2, 3)
    pack = rng.choice([12, 18, 24, 30])
    price = cents(rng, 250, 800)
    need = guests * per_guest
    head = [f"{p.Subj} needs {guests} * {per_guest} = {need} cups."]
    more, packs = ceil_steps(need, pack, "packs")
    cost = packs * price
    q = (
        f"{p.name} is organizing a picnic for {guests} people and wants {per_guest} paper cups "
        f"per person. Cups are sold in packs of {pack} for {usd(price)} a pack. How much will "
        f"{p.subj} spend on cups?"
    )
    tail = [f"The cost is {packs} * {usd(price)} = {usd(cost)}."]
    return q, head + more + tail, cost


def t_percent_score(rng):
    (p,) = people(rng)
    total = rng.choice([20, 25, 40, 50, 80])
    wrong = rng.randint(1, total // 4)
    right = total - wrong
    pct = Fraction(right * 100, total)
    q = (
        f"A quiz has {total} questions, all worth the same. {p.name} answered every question and "
        f"got {wrong} wrong. What percentage did {p.subj} score?"
    )
    steps = [
        f"{p.Subj} got {total} - {wrong} = {right} right.",
        f"Percentage: {right} / {total} * 100 = {fmt(pct)}%.",
    ]
    return q, steps, pct


TEMPLATES = [
    t_change,
    t_eggs,
    t_reading,
    t_overtime,
    t_discount_tax,
    t_class_fraction,
    t_avg_speed,
    t_test_average,
    t_recipe,
    t_savings,
    t_ages,
    t_linear,
    t_fence,
    t_ribbon,
    t_practice_hours,
    t_share_remainder,
    t_tickets,
    t_growth,
    t_pizza,
    t_garden,
    t_parking,
    t_commission,
    t_consecutive,
    t_two_items,
    t_ratio,
    t_interest,
    t_fuel,
    t_ounces,
    t_temperature,
    t_party_pizza,
    t_buses,
    t_pipes,
    t_marbles,
    t_commute,
    t_square_fence,
    t_coins,
    t_inventory,
    t_unit_price,
    t_train_minutes,
    t_pace,
    t_spent_fractions,
    t_reverse_discount,
    t_cups,
    t_speed_units,
    t_average_rainfall,
    t_bulk_packs,
    t_percent_score,
]
