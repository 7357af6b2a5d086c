"""Build the default calibration corpus, ``calibration/default.jsonl``.

The corpus is what ARM runs through a model when the user gives no ``--data``:
a mix of English prose, grade-school math with worked solutions, and short code
snippets.  Everything here was written for this project.  The English and code
samples are embedded below as data; the math problems are generated from
templates with a fixed seed, and every arithmetic step in every worked solution
is re-checked before the file is written.

Run from the repository root::

    python calibration/generate.py          # (re)write default.jsonl
    python calibration/generate.py --check  # verify the file on disk is up to date

The output is byte-for-byte deterministic.  Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import sys
import textwrap
from collections import Counter
from fractions import Fraction
from pathlib import Path

SEED = 20240917
HERE = Path(__file__).resolve().parent
OUT_PATH = HERE / "default.jsonl"

ENGLISH: list[str] = []
CODE: list[tuple[str, str, str]] = []  # (task description, language, code)


# ---------------------------------------------------------------------------
# English prose (hand-written for this project)
# ---------------------------------------------------------------------------

# Encyclopedic and explanatory
ENGLISH += [
    """
    Tides are the regular rise and fall of the sea, and they are driven mostly by the
    Moon. The Moon's gravity pulls slightly harder on the side of the Earth that faces it
    than on the Earth's center, and harder on the center than on the far side. The result
    is two bulges of water, one under the Moon and one on the opposite side of the planet.
    As the Earth turns, a coastline passes through both bulges, which is why most places
    see two high tides and two low tides roughly every twenty-four hours and fifty
    minutes. The Sun has a similar but weaker effect. When the Sun and Moon line up, at
    new moon and full moon, their pulls add together and produce spring tides with an
    unusually large range. When they sit at right angles, the smaller neap tides follow.
    """,
    """
    The printing press did not appear out of nowhere. Paper, ink and the idea of pressing
    an image onto a page had been known for centuries, and printers in East Asia were
    using movable type long before it reached Europe. What Johannes Gutenberg brought
    together in Mainz around 1450 was a practical system: a hand mould for casting large
    numbers of identical metal letters, an oil-based ink that clung to metal, and a screw
    press adapted from the ones used for wine and olives. The combination made it cheap to
    produce hundreds of copies of the same text. Within fifty years, presses were running
    in more than two hundred European towns, and the price of books had fallen so far that
    merchants, students and craftsmen could own them.
    """,
    """
    Octopuses are mollusks, related to snails and clams, yet they behave in ways that
    look remarkably clever. In laboratories they have learned to unscrew jar lids, find
    their way through simple mazes, and recognize individual keepers, sometimes squirting
    water at people they dislike. Much of an octopus's nervous system is not in its head
    at all: about two thirds of its neurons are spread through the arms, which can taste,
    touch and react with a good deal of independence. Because octopuses live short lives
    and rarely meet their parents, almost none of this skill can be taught. Each animal
    works out its world for itself in a year or two, which makes their abilities all the
    more striking.
    """,
    """
    Honeybees live in colonies that can hold tens of thousands of workers, a few hundred
    males called drones, and usually a single queen. The workers are all female, and what
    a worker does depends largely on her age. Young bees clean cells and feed larvae;
    middle-aged bees build wax comb, process nectar and guard the entrance; the oldest go
    out to forage. A forager that finds a good patch of flowers returns and performs a
    waggle dance on the comb. The angle of the dance relative to vertical tells the other
    bees the direction of the food relative to the Sun, and the length of the waggling
    run tells them roughly how far away it is.
    """,
    """
    Roman aqueducts carried water into cities using nothing but gravity. Engineers
    surveyed a route from a spring or river in the hills and built a channel that dropped
    very gently along its whole length, sometimes by only a few centimeters per hundred
    meters. Most of the channel ran underground or along the surface; the famous arched
    bridges were needed only where the route crossed a valley. At the city end, water
    flowed into distribution tanks and from there through lead or clay pipes to public
    fountains, baths and the houses of people who paid for a private supply. Rome itself
    was eventually served by eleven aqueducts, which together delivered more water per
    person than many modern cities provide.
    """,
    """
    A glacier forms wherever more snow falls in winter than melts in summer. Year after
    year the snow piles up and is compressed into dense, granular firn and finally into
    solid ice. Once the ice is thick enough, usually a few dozen meters, its own weight
    makes it flow slowly downhill like an extremely stiff liquid. As it moves, it plucks
    rocks from the ground beneath it and drags them along, grinding the bedrock into fine
    powder. This is why glacial meltwater often looks milky and why valleys carved by
    glaciers have a broad U shape rather than the narrow V cut by rivers. When a glacier
    retreats, it leaves behind heaps of loose rubble called moraines that mark how far it
    once reached.
    """,
    """
    Tea comes from a single species of plant, Camellia sinensis, and the differences
    between green, black, oolong and white tea are mostly a matter of processing. After
    picking, the leaves begin to oxidize, much as a cut apple turns brown. For green tea,
    producers stop this quickly by steaming or pan-firing the fresh leaves. For black tea,
    they roll the leaves to break the cell walls and let oxidation run its course before
    drying. Oolong sits somewhere in between, partly oxidized and often rolled into tight
    balls or twisted strips. White tea is the least handled of all: young buds and leaves
    are simply withered and dried. Soil, altitude and weather add their own character, so
    two gardens on the same hillside can produce noticeably different cups.
    """,
    """
    The metric system was born in France in the 1790s, in the middle of the Revolution.
    Before it, units of length and weight varied from town to town, which made trade
    confusing and gave dishonest merchants plenty of room to cheat. The reformers wanted
    units based on nature rather than on the body of a king. They defined the meter as one
    ten-millionth of the distance from the North Pole to the equator, measured along the
    meridian through Paris, and sent two astronomers on a seven-year survey to measure it.
    The gram was tied to the mass of a cube of water one centimeter on a side. Larger and
    smaller units followed by powers of ten, so converting between them only meant moving
    a decimal point.
    """,
    """
    A lighthouse has two jobs: to warn ships away from danger and to tell them where they
    are. The first is simple enough, since any bright light on a headland says that land
    is near. The second is handled by giving each light its own signature. One might show
    a single white flash every five seconds, another two red flashes every ten, another a
    steady light interrupted by brief dark intervals. Navigators carry lists of these
    characteristics and can identify a light by timing it with a watch. In daylight, the
    towers themselves help, because many are painted with distinctive bands, stripes or
    checks. Today satellite navigation does most of the work, but lights are still kept
    as a backup in case electronics fail.
    """,
    """
    Sleep is not a single steady state. Through the night the brain cycles through
    several stages, each lasting a few minutes to half an hour, and a full cycle takes
    about ninety minutes. In light sleep, breathing slows and the body relaxes. Deep
    sleep, which dominates the first half of the night, is marked by slow, large brain
    waves and is hard to wake from; it seems important for physical recovery and for
    consolidating certain kinds of memory. Rapid eye movement sleep, or REM, becomes
    longer toward morning. During REM the brain is highly active and most vivid dreams
    occur, while the muscles of the arms and legs are temporarily paralyzed, which keeps
    sleepers from acting out what they dream.
    """,
    """
    Composting is controlled rotting. Bacteria and fungi break down food scraps, leaves
    and other organic material into a dark, crumbly substance that improves soil. The
    microbes need four things: carbon, nitrogen, water and air. Dry brown materials such
    as straw, cardboard and autumn leaves supply carbon, while green materials such as
    vegetable peelings and grass clippings supply nitrogen. A pile with too much green
    turns slimy and smells of ammonia; one with too much brown just sits there. Turning
    the heap lets oxygen in, and a well-balanced pile can heat up to sixty degrees Celsius
    in its center, hot enough to kill many weed seeds. Depending on the care it gets,
    compost can be ready in a few months or take a year or more.
    """,
    """
    The Arctic tern makes the longest known migration of any animal. It breeds in the far
    north during the northern summer, then flies south to spend the southern summer off
    the coast of Antarctica, so it sees more daylight each year than almost any other
    creature. Tracking studies using tiny devices attached to the birds' legs have shown
    that they do not fly in a straight line. Instead they follow winding routes that take
    advantage of prevailing winds, and they stop in productive stretches of ocean to feed.
    A single round trip can exceed seventy thousand kilometers. Because terns can live for
    thirty years, one bird may travel a distance equal to going to the Moon and back three
    times.
    """,
    """
    Before the invention of mechanical clocks, people told time with sundials, water
    clocks and candles marked with rings. Each had its problems. A sundial is useless at
    night or under clouds, and water clocks were sensitive to temperature because cold
    water flows more slowly. The first mechanical clocks appeared in European church
    towers around the end of the thirteenth century. They were driven by a falling weight
    and regulated by a device called an escapement, which let the gears advance in small,
    regular steps. Early versions could drift by a quarter of an hour a day and often had
    no minute hand at all. The pendulum clock, developed in the seventeenth century, cut
    that error to a few seconds.
    """,
    """
    Braille is a system of raised dots that lets blind and partially sighted people read
    by touch. Each character is built from a cell of six possible dot positions arranged
    in two columns of three, which gives sixty-four combinations, including the blank
    cell. Louis Braille developed the system in France in the 1820s while he was still a
    teenager, adapting a more complicated code of dots that had been designed for sending
    messages at night. Besides letters, braille has signs for numbers, punctuation and
    capital letters, and many languages use contractions to save space, with single cells
    standing for common words like "and" or "the". Musical notation and mathematics have
    braille codes of their own.
    """,
    """
    Bread rises because of yeast, a single-celled fungus that feeds on sugars in the
    dough. As it feeds, it releases carbon dioxide and a little alcohol. Kneading develops
    gluten, a network of proteins from the wheat flour that is both stretchy and strong,
    and this network traps the gas in countless small bubbles. During baking, the heat
    makes the bubbles expand rapidly before the yeast dies and the dough sets, which is
    why a loaf grows in the first minutes in the oven. The alcohol evaporates, and the
    sugars and proteins on the surface react to form the brown, flavorful crust.
    Sourdough works the same way, except that wild yeasts and bacteria do the job, adding
    a pleasant sourness.
    """,
    """
    Bridges come in a few basic forms, and each handles weight differently. A beam bridge
    is the simplest: a rigid span resting on supports at each end, with the top of the
    beam squeezed and the bottom stretched. An arch bridge turns the load into compression
    that is pushed outward into the ground at its ends, which is why stone, a material
    that is strong when squeezed but weak when pulled, works so well in arches. A
    suspension bridge hangs its deck from cables draped between tall towers, putting the
    cables in tension; this design can cross the longest gaps. Cable-stayed bridges, a
    newer variant, run cables straight from the towers to the deck and have become popular
    for medium spans.
    """,
    """
    Salt was once so valuable that it shaped trade routes and even wars. Before
    refrigeration, salting was one of the few reliable ways to preserve meat and fish
    through the winter, and people and livestock also need some salt in their diet to
    survive. Cities grew up near salt springs and coastal salt pans, and caravans carried
    slabs of rock salt across the Sahara in exchange for gold. Many governments taxed salt
    because everyone had to buy it. In China the state controlled its production for
    centuries, and in colonial India a salt tax became a symbol of unjust rule when Gandhi
    led thousands of people on a march to the sea in 1930 to make salt from seawater.
    """,
    """
    Mushrooms are only the visible part of much larger organisms. Most of a fungus lives
    hidden in soil or wood as a web of thread-like cells called hyphae, which together
    form a mycelium. The mycelium grows by extending its tips and releasing enzymes that
    digest the material around it, then absorbing the nutrients. When conditions are
    right, often after rain, it produces a mushroom, whose job is to scatter spores. Many
    forest trees depend on partnerships with fungi: the fungal threads wrap around or
    enter the tree's roots and trade water and minerals for sugars that the tree makes by
    photosynthesis. Some mycelial networks cover enormous areas, and one in Oregon spreads
    across more than nine square kilometers.
    """,
    """
    The Moon's phases depend on where it sits in its orbit relative to the Sun and the
    Earth. Half of the Moon is always lit by the Sun, but we see different amounts of
    that lit half as the Moon travels around us. At new moon it lies roughly between the
    Earth and the Sun, and its bright side faces away from us. Over the next two weeks we
    see a growing crescent, then a half disk called the first quarter, then a gibbous moon
    and finally the full moon, when the whole lit face points toward Earth. The process
    then runs in reverse. A complete cycle takes about twenty-nine and a half days, which
    is the origin of the month as a unit of time.
    """,
    """
    Coral reefs are built by tiny animals. A coral polyp is a soft, tube-shaped creature a
    few millimeters across with a ring of tentacles around its mouth. Reef-building
    species live in colonies of thousands of genetically identical polyps, each of which
    lays down a cup of limestone beneath itself. Over centuries these skeletons accumulate
    into massive structures. Most reef corals contain microscopic algae in their tissues.
    The algae photosynthesize and pass much of the sugar they make to the coral, which is
    why reefs grow best in clear, shallow, sunlit water. When water becomes too warm, the
    partnership breaks down and the coral expels its algae, turning white in an event
    known as bleaching.
    """,
    """
    Jazz grew out of New Orleans around the start of the twentieth century, a port city
    where African American musical traditions such as the blues, spirituals and work songs
    met brass band marches, ragtime piano and music from the Caribbean. Early bands
    featured a cornet or trumpet carrying the melody, a clarinet weaving around it, and a
    trombone filling in the lower lines, all improvising at the same time over a steady
    rhythm section. As musicians moved north to Chicago and New York in the 1920s, the
    music changed. Solo improvisation moved to the front, and players like Louis Armstrong
    showed how much a single voice could say within the structure of a tune.
    """,
    """
    Chess probably descends from a game called chaturanga that was played in India around
    the sixth century. It spread to Persia, where it became shatranj, and then through the
    Islamic world into Europe. For centuries the pieces moved more slowly than they do
    today. The piece that became the queen could step only one square diagonally, and the
    bishop could jump just two squares, so games were long and cautious. In the late
    fifteenth century, players in Spain and Italy gave the queen and bishop their modern
    powers, and the game became much faster and sharper. Castling and the pawn's initial
    two-square move were settled over the following centuries, and the rules have been
    essentially stable since the 1800s.
    """,
    """
    Deserts are defined by how little rain they receive, not by heat. Antarctica is
    technically the largest desert on Earth. Plants in hot deserts survive with a variety
    of tricks. Cacti store water in thick, fleshy stems, and their spines are modified
    leaves that lose almost no water and discourage thirsty animals. Many desert plants
    open their pores only at night, when the air is cooler, and store carbon dioxide to
    use for photosynthesis during the day. Others avoid drought entirely: their seeds can
    lie in the sand for years until a good rain arrives, and then they germinate, flower
    and produce new seeds within a few weeks, carpeting the ground with color.
    """,
    """
    Paper money began in China. During the Tang dynasty, merchants who did not want to
    carry heavy strings of copper coins started leaving them with trusted dealers in
    exchange for written receipts, which could be traded in place of the coins. By the
    eleventh century the Song government had taken over the business and was issuing
    official notes. The idea was powerful but risky: when rulers printed too many notes to
    pay for wars, prices rose and people lost faith in the currency. European visitors
    such as Marco Polo were amazed that paper could serve as money. In Europe, banknotes
    became common only in the seventeenth century, first as receipts for gold held by
    goldsmiths and banks.
    """,
    """
    The Silk Road was never a single road. It was a shifting web of caravan routes,
    mountain passes and sea lanes that linked China with Central Asia, India, Persia and
    the Mediterranean for more than a thousand years. Few traders traveled the whole
    distance. Instead, goods passed from hand to hand through oasis towns such as
    Samarkand and Kashgar, and their prices climbed with each exchange. Silk went west,
    along with paper, porcelain and spices, while horses, glassware, wool and silver
    traveled east. Ideas moved just as readily as goods. Buddhism reached China along
    these routes, and the craft of papermaking gradually spread in the other direction,
    reaching Samarkand by the eighth century and Baghdad soon after.
    """,
]

# Science explanations
ENGLISH += [
    """
    Why is the sky blue? Sunlight looks white, but it is a mixture of all the colors of
    the rainbow. As it passes through the atmosphere, it bumps into nitrogen and oxygen
    molecules that are much smaller than the wavelength of the light. These molecules
    scatter short wavelengths far more strongly than long ones, so blue light is bounced
    around the sky in every direction while red and yellow light mostly pass straight
    through. When you look at any part of the sky away from the Sun, you are seeing that
    scattered blue light. At sunrise and sunset, sunlight travels through much more air to
    reach you, so most of the blue has been scattered away before it arrives, leaving the
    warm oranges and reds.
    """,
    """
    A battery is a small chemical factory that pushes electrons through a circuit. Inside
    are two different materials, the electrodes, separated by an electrolyte that lets
    charged atoms move but blocks electrons. One electrode gives up electrons easily and
    the other is eager to accept them. When you connect the two ends of the battery with
    a wire, electrons flow through the wire from one electrode to the other, doing useful
    work on the way, such as lighting a bulb. At the same time, ions drift through the
    electrolyte to balance the charge. In a rechargeable battery, pushing current in the
    opposite direction reverses the chemical reactions and restores the materials to their
    original state.
    """,
    """
    Most substances get denser when they freeze, but water does the opposite, and the
    reason lies in the shape of its molecules. A water molecule is bent, with a slightly
    negative oxygen atom and two slightly positive hydrogen atoms. Neighboring molecules
    attract each other through hydrogen bonds. In liquid water these bonds constantly
    break and re-form, and the molecules can pack fairly close together. When water
    freezes, each molecule locks into place bonded to four neighbors in an open,
    hexagonal lattice that takes up about nine percent more space. That is why ice floats,
    and why lakes freeze from the top down, leaving liquid water below where fish can
    survive the winter.
    """,
    """
    An airplane wing is shaped and tilted so that it pushes air downward as it moves
    forward. By Newton's third law, if the wing pushes air down, the air pushes the wing
    up, and that upward push is lift. Another way to describe the same thing is in terms of
    pressure: air flowing over the curved upper surface speeds up and its pressure drops,
    while the pressure beneath the wing stays higher, so there is a net upward force. Both
    explanations are correct and describe the same flow. Pilots control lift by changing
    speed and by changing the angle at which the wing meets the air, but if that angle
    gets too steep, the airflow separates from the wing and lift collapses in a stall.
    """,
    """
    The greenhouse effect is the reason Earth is not a frozen ball. Sunlight, mostly in
    the form of visible light, passes easily through the atmosphere and warms the ground
    and oceans. The warmed surface then gives off energy as infrared radiation. Gases such
    as water vapor, carbon dioxide and methane absorb some of this infrared and send it
    back in all directions, including downward, so the surface ends up warmer than it
    would otherwise be. Without any greenhouse gases, the average surface temperature
    would be about eighteen degrees below zero Celsius. The concern today is that burning
    fossil fuels has raised carbon dioxide levels sharply, strengthening the effect and
    warming the climate.
    """,
    """
    DNA is a long molecule that stores the instructions for building and running a living
    thing. It is made of two strands twisted around each other in a double helix. Each
    strand is a chain of units called nucleotides, and each nucleotide carries one of four
    bases, usually written A, C, G and T. The bases on opposite strands pair up in a fixed
    way, A with T and C with G, so each strand contains all the information needed to
    rebuild the other. When a cell divides, the strands separate and enzymes assemble new
    partners for each. A gene is a stretch of DNA whose sequence of bases spells out how
    to make a particular protein.
    """,
    """
    Sound is a traveling wave of pressure. When a guitar string vibrates, it pushes the
    air next to it back and forth, squeezing and stretching it in rapid succession. Those
    compressions pass from molecule to molecule, spreading outward at about three hundred
    and forty meters per second in air at room temperature. When the wave reaches your
    ear, it moves your eardrum in the same pattern, and tiny bones and hair cells in the
    inner ear convert the motion into nerve signals. The number of vibrations per second
    sets the pitch, and the size of the pressure swings sets the loudness. Sound travels
    faster in water and faster still in steel, but it cannot cross a vacuum at all.
    """,
    """
    A GPS receiver works out its position by timing signals. Each satellite in the system
    carries a very precise atomic clock and continuously broadcasts the time along with
    its own location. The signal travels at the speed of light, so if your receiver knows
    how long a message took to arrive, it knows how far away that satellite is. A
    distance to one satellite puts you somewhere on a huge sphere; distances to three
    narrow that down to a point. The receiver's own clock is cheap and inaccurate, so it
    uses a fourth satellite to solve for its clock error as well. The system even has to
    correct for relativity, because clocks in orbit tick at a slightly different rate.
    """,
    """
    The seasons are caused by the tilt of the Earth's axis, not by changes in our
    distance from the Sun. The axis leans about twenty-three and a half degrees and keeps
    pointing in the same direction in space as the planet orbits. For part of the year
    the Northern Hemisphere is tipped toward the Sun. Sunlight then strikes it more
    directly, concentrating its energy on a smaller area, and days are longer, so it is
    summer there. Six months later the north is tipped away, the light arrives at a low
    slant, nights are long, and it is winter. The Southern Hemisphere has the opposite
    seasons at the same time, so Christmas in Australia falls in midsummer.
    """,
    """
    A magnet works because of the way its electrons spin. Each electron behaves like a
    tiny magnet itself. In most materials, these tiny magnets point in random directions
    and cancel out. In iron, nickel and cobalt, however, neighboring atoms tend to line up
    their magnetic moments in small regions called domains. In an ordinary iron nail the
    domains point every which way, but if you stroke the nail with a strong magnet or
    place it in a coil carrying current, many domains swing into alignment and the nail
    becomes magnetized. Heating a magnet above a certain temperature, known as the Curie
    point, scrambles the domains again, and the magnetism disappears.
    """,
    """
    Natural selection is a simple process with enormous consequences. Individuals in a
    population vary, and some of that variation is inherited. More offspring are born
    than can survive, so there is competition for food, mates and safety. Individuals
    whose inherited traits suit their surroundings a little better tend to survive longer
    and leave more offspring, and those traits become more common in the next generation.
    Repeated over thousands of generations, small advantages add up. A classic example is
    the peppered moth in industrial England: as soot darkened tree bark, dark moths became
    harder for birds to spot and grew common, and when the air was cleaned up, pale moths
    returned.
    """,
    """
    Your eyes see color with three kinds of cone cells in the retina. Each type contains a
    pigment that responds best to a different range of wavelengths, roughly short, medium
    and long, which people loosely call blue, green and red. A single cone cannot tell the
    difference between a dim light at its favorite wavelength and a bright light at a
    wavelength it barely notices. The brain works out color by comparing how strongly the
    three types respond. Yellow light, for example, stimulates the medium and long cones
    about equally. That is why a screen can fool us into seeing yellow by mixing red and
    green pixels: the cones respond in the same way to both.
    """,
    """
    Fermentation is what cells do to get energy when there is not enough oxygen. Yeast
    breaks sugar down into alcohol and carbon dioxide, which is the basis of brewing and
    baking. Certain bacteria turn sugar into lactic acid instead, and people have used
    them for thousands of years to make yogurt, cheese, sauerkraut and kimchi. The acid
    lowers the pH so much that most harmful microbes cannot grow, which is why fermented
    foods keep well. Your own muscles switch to a form of lactic acid fermentation during
    a hard sprint, when the blood cannot deliver oxygen quickly enough to meet demand,
    although the burning feeling in tired muscles has several causes.
    """,
    """
    A refrigerator does not create cold; it moves heat from inside the box to the room
    outside. It does this by pumping a refrigerant around a closed loop. Inside the fridge
    the refrigerant passes through an expansion valve, where its pressure drops and it
    evaporates, absorbing heat from the food compartment just as sweat cools your skin as
    it dries. A compressor then squeezes the vapor, raising its temperature well above
    that of the kitchen. In the coils at the back, the hot vapor releases its heat to the
    room and condenses back into a liquid, ready to go around again. That is why the back
    of a fridge feels warm.
    """,
    """
    Leaves are green because they are full of chlorophyll, the pigment that captures
    light for photosynthesis. Chlorophyll absorbs red and blue light and reflects green.
    Leaves also contain yellow and orange pigments called carotenoids, but in summer they
    are masked by the much larger amount of chlorophyll. As days shorten in autumn, many
    trees stop making new chlorophyll and break down the old molecules to recover their
    nitrogen. The green fades and the yellows and oranges show through. Some trees, such
    as maples, go further and produce new red pigments in the dying leaves, especially
    after sunny days and cool nights, which is why some autumns are more brilliant than
    others.
    """,
    """
    Earthquakes are measured by the energy they release, and the scale is logarithmic.
    Seismologists today mostly use the moment magnitude scale, which is based on how much
    the fault slipped, how large an area moved, and how stiff the rock is. Each whole
    step on the scale corresponds to about thirty-two times more energy, so a magnitude
    seven earthquake releases roughly a thousand times the energy of a magnitude five.
    Magnitude is different from intensity, which describes how strongly the shaking was
    felt at a particular place. A moderate quake directly beneath a city can cause more
    damage than a much larger one far out at sea.
    """,
    """
    Antibiotics kill bacteria or stop them from multiplying by attacking structures that
    human cells do not have, such as the bacterial cell wall. The trouble is that
    bacterial populations are huge and reproduce quickly, so random mutations that happen
    to make a few cells less sensitive to a drug appear fairly often. When an antibiotic
    is used, the susceptible bacteria die and the resistant ones survive and multiply.
    Bacteria can also pass resistance genes to one another directly, even between
    different species. Using antibiotics only when they are needed, and finishing a
    course as prescribed, slows the spread of resistance, which has become one of the
    major challenges in modern medicine.
    """,
    """
    Light travels through empty space at almost exactly three hundred thousand kilometers
    per second. At that speed it could circle the Earth more than seven times in a single
    second, yet the universe is so large that even light takes a long time to cross it.
    Sunlight needs about eight minutes to reach us, so we always see the Sun as it was
    eight minutes ago. Light from the nearest star beyond the Sun takes more than four
    years. When astronomers observe a galaxy millions of light years away, they are
    looking at light that set out millions of years ago. In that sense, a telescope is
    also a time machine.
    """,
    """
    Your immune system has two main layers. The innate layer responds within minutes to
    hours. It includes barriers like skin and mucus, and white blood cells that recognize
    general features shared by many germs and swallow them. Inflammation, the heat,
    redness and swelling around a cut, is part of this response. The adaptive layer is
    slower to start but far more precise. Its B cells make antibodies that fit one
    particular invader, and its T cells can find and destroy infected body cells. After an
    infection, some of these cells remain as memory cells, so a second encounter with the
    same germ is usually fought off before you feel ill. Vaccines train this memory safely.
    """,
    """
    Entropy is often described as disorder, but a more useful idea is that it counts how
    many ways a system can be arranged without changing how it looks from the outside.
    Consider a drop of ink in a glass of water. There are only a few arrangements in which
    all the ink molecules stay bunched together, and an astronomically larger number in
    which they are spread evenly through the glass. As the molecules jiggle about at
    random, the system almost inevitably wanders into one of the spread-out arrangements,
    simply because there are so many more of them. The second law of thermodynamics,
    which says entropy tends to increase, is at heart a statement about probability.
    """,
    """
    Black holes form when a very massive star runs out of fuel and its core collapses
    under its own gravity. If the collapsing core is heavy enough, no known force can stop
    it, and it shrinks until its gravity is so strong that nothing, not even light, can
    escape from within a boundary called the event horizon. A black hole cannot be seen
    directly, but its effects can. Gas spiraling into one heats up to millions of degrees
    and glows brightly in X-rays, and stars orbiting an invisible companion reveal its
    mass. In 2019 astronomers released the first image of the shadow of a black hole,
    surrounded by a ring of glowing material, in the galaxy M87.
    """,
    """
    Photosynthesis is the process plants, algae and some bacteria use to turn light into
    chemical energy. In the chloroplasts of a leaf, chlorophyll absorbs light and uses its
    energy to split water molecules, releasing oxygen as a by-product. The energy captured
    in this first stage is stored temporarily in carrier molecules. In the second stage,
    which does not need light directly, the plant uses that stored energy to take carbon
    dioxide from the air and build it into sugar. The sugar fuels the plant's growth and
    is the starting point of nearly every food chain on land. Almost all the oxygen we
    breathe was released by photosynthesis at some point.
    """,
    """
    Plate tectonics explains why continents drift, mountains rise and earthquakes cluster
    in certain regions. The Earth's outer shell is broken into about a dozen large plates
    and many smaller ones, which ride on hotter, slowly flowing rock beneath. They move a
    few centimeters a year, about as fast as fingernails grow. Where plates pull apart,
    as along the middle of the Atlantic, magma rises to fill the gap and creates new ocean
    floor. Where they collide, one plate may dive beneath the other, producing deep
    trenches and chains of volcanoes, or the crust may crumple upward into ranges like the
    Himalayas. Where they slide past each other, strain builds until it is released in
    earthquakes.
    """,
]

# How-to instructions
ENGLISH += [
    """
    To fix a flat bicycle tire, start by shifting to the smallest rear gear and releasing
    the brake so the wheel can come out. Open the quick-release lever or loosen the axle
    nuts and remove the wheel. Let out any remaining air, then push one tire lever under
    the edge of the tire, hook it onto a spoke, and run a second lever around the rim
    until one side of the tire pops free. Pull out the inner tube and run your fingers
    carefully around the inside of the tire to find whatever caused the puncture, such as
    a thorn or a sliver of glass. Put a little air into the new tube so it holds its
    shape, tuck it in, and work the tire back onto the rim with your thumbs. Inflate it to
    the pressure printed on the sidewall.
    """,
    """
    Making pour-over coffee takes only a few minutes once you have the rhythm. Heat water
    to just below boiling, around ninety-three degrees Celsius. Weigh out about fifteen
    grams of coffee for every two hundred and fifty grams of water, and grind it to the
    texture of coarse sand. Rinse the paper filter with hot water to remove its papery
    taste and warm the dripper, then discard that water. Add the grounds, shake them level,
    and pour just enough water to wet them all. Wait thirty seconds while the coffee
    blooms and releases gas. Then pour the rest slowly in small circles, keeping the level
    steady. The whole brew should finish in about three minutes; if it runs much faster,
    grind finer next time.
    """,
    """
    Tomatoes need warmth, sun and steady water. Wait until nighttime temperatures stay
    above ten degrees Celsius before planting outside, and choose a spot that gets at
    least six hours of direct sun. Dig a hole deeper than the pot and bury the stem up to
    the first set of leaves; tomatoes grow roots along buried stems, which makes the plant
    sturdier. Space plants about sixty centimeters apart so air can move between them,
    and put in a stake or cage at planting time rather than later, when you might damage
    the roots. Water deeply at the base two or three times a week instead of sprinkling a
    little every day, and mulch with straw to keep the soil evenly moist.
    """,
    """
    A houseplant needs repotting when roots circle the bottom of the pot or poke out of
    the drainage holes, or when water runs straight through without soaking in. Choose a
    new pot only two to five centimeters wider than the old one; a much larger pot holds
    too much wet soil and can rot the roots. Water the plant a day before so the root ball
    slides out more easily. Turn the pot on its side, support the base of the stems with
    one hand, and ease the plant out. Gently loosen the outer roots with your fingers and
    trim any that are black or mushy. Set the plant on a layer of fresh potting mix at the
    same depth as before, fill around it, press lightly, and water well.
    """,
    """
    Cleaning a cast iron pan is easier than its reputation suggests. While the pan is
    still warm, rinse it under hot water and scrub off stuck food with a brush or a
    plastic scraper. A small amount of dish soap will not hurt a well-seasoned pan, despite
    what you may have heard; just avoid soaking it or putting it in the dishwasher. For
    stubborn bits, scour with a handful of coarse salt and a little oil. Dry the pan
    completely with a towel, then set it on a low burner for a minute or two to drive off
    the last moisture. Finally, rub a few drops of cooking oil over the inside with a
    paper towel, wiping until the surface looks dry rather than greasy.
    """,
    """
    A simple monthly budget starts with what actually comes in. Add up your take-home pay
    after taxes, not your salary on paper. Next, list the fixed costs that barely change
    from month to month: rent or mortgage, insurance, loan payments, phone and internet.
    Then look back over two or three months of bank statements to estimate the variable
    costs, such as groceries, fuel, eating out and entertainment. Most people are
    surprised by at least one category. Decide on an amount to set aside for savings and
    treat it like a bill that is paid first. Whatever remains is what you can spend
    freely. Check in every few weeks and adjust the numbers; a budget is a plan, not a
    prediction.
    """,
    """
    To fold a fitted sheet neatly, stand holding it inside out by two adjacent corners,
    one in each hand, with the elastic facing you. Push your hands into those corners.
    Bring your right hand to your left and fold the right corner over the left one, so the
    two corner pockets nest together. Reach down, find the third corner, and tuck it over
    the pair in your hand, then do the same with the last corner. You now have all four
    corners stacked. Lay the sheet on a flat surface, straighten the edges into a rough
    rectangle with the curved elastic tucked in, and fold it in thirds lengthwise and then
    in half or thirds again until it is the size you want.
    """,
    """
    If you have never run before, begin with intervals of running and walking rather
    than trying to run continuously. A common plan is to warm up with five minutes of
    brisk walking, then alternate one minute of easy jogging with two minutes of walking,
    eight times over. Go three times a week with a rest day in between. Each week, lengthen
    the running intervals a little and shorten the walks. The pace should feel easy
    enough that you could hold a conversation; new runners often go too fast and then
    decide they hate running. Expect some muscle soreness in the first weeks, but sharp
    pain in a joint or shin is a signal to rest for a few days.
    """,
    """
    A good backup plan follows the three-two-one rule: keep three copies of anything you
    care about, on two different kinds of storage, with one copy somewhere other than your
    home. In practice, that might mean the original files on your laptop, a second copy on
    an external drive that you update automatically every night, and a third in a cloud
    storage service. Test your backups occasionally by actually restoring a few files;
    many people discover that a backup was broken only when they need it. Finally, keep at
    least one copy that cannot be changed by ransomware, such as a drive that you unplug
    after each backup or a cloud service that keeps older versions.
    """,
    """
    Sharpening a kitchen knife on a whetstone takes practice but little equipment. Soak
    the stone in water for ten minutes if it is the kind that needs soaking, and set it on
    a damp towel so it will not slide. Hold the knife with the edge facing away from you
    at an angle of about fifteen to twenty degrees to the stone; two stacked coins under
    the spine give a rough idea of the height. Push the blade across the stone as if you
    were slicing a thin layer off it, sweeping from heel to tip. Repeat until you can feel
    a slight burr along the opposite side of the edge, then switch sides. Finish with a few
    light, alternating strokes on the fine side.
    """,
    """
    The bowline makes a fixed loop at the end of a rope that will not slip or jam, which is
    why sailors and climbers rely on it. Form a small overhand loop in the standing part
    of the rope, with the working end lying on top. A traditional way to remember the next
    steps is the story of the rabbit: the rabbit comes up out of the hole, goes around the
    tree, and goes back down the hole. Pass the working end up through the small loop,
    take it around behind the standing part, and bring it back down through the small
    loop. Hold the working end against the side of the big loop and pull the standing part
    to tighten the knot.
    """,
    """
    Every household should have an emergency kit that could last three days without
    power or running water. Store about four liters of water per person per day, along
    with canned or dried food that needs no cooking, and a manual can opener. Add a
    flashlight and a battery-powered or hand-crank radio, with spare batteries. Include a
    first aid kit, a week's supply of any essential medication, copies of important
    documents in a waterproof bag, some cash in small bills, and a whistle to signal for
    help. Think about the needs of children, older relatives and pets. Keep the kit in an
    easy-to-reach place and check it once a year, replacing food and water that has expired.
    """,
    """
    Painting a room goes faster when most of the effort goes into preparation. Move
    furniture to the middle and cover it, along with the floor, with drop cloths. Fill
    holes and cracks with spackle, let it dry, and sand it smooth. Wipe the walls to remove
    dust and grease, and run painter's tape along the trim and ceiling. Paint the edges
    first with a brush, a technique known as cutting in, then use a roller for the open
    areas, working in overlapping W shapes to spread the paint evenly. Keep a wet edge so
    the roller marks blend. Most walls need two coats; wait for the first to dry
    completely, and remove the tape before the second coat fully hardens.
    """,
    """
    A nutrition label is most useful if you read it from the top. Start with the serving
    size, because every number below it refers to that amount, and the package may hold
    two or three servings or more. Next look at calories. Then check the nutrients to
    limit, such as saturated fat, sodium and added sugars, and the ones most people need
    more of, such as fiber, potassium and calcium. The percent daily value column gives a
    quick sense of scale: five percent or less is considered low, and twenty percent or
    more is high. Finally, glance at the ingredient list, which is ordered by weight, so
    the first few ingredients make up most of the food.
    """,
    """
    A basic vinaigrette needs only oil, acid, salt and something to help them combine. The
    classic ratio is three parts oil to one part vinegar or lemon juice, but many cooks
    prefer it a little sharper. Put a spoonful of mustard, a pinch of salt and the vinegar
    in a small bowl or jar. Add finely chopped shallot or a crushed garlic clove if you
    like, and let it sit for a few minutes to soften the raw bite. Then whisk in the oil
    slowly, or put a lid on the jar and shake hard. Taste it on a leaf of lettuce rather
    than from the spoon, and adjust with more salt, acid or a little honey.
    """,
    """
    When you set up a new aquarium, do not add fish on the first day. Rinse the gravel,
    install the filter and heater, fill the tank with water treated to remove chlorine,
    and let everything run. Fish waste produces ammonia, which is toxic, and a healthy tank
    depends on colonies of bacteria that turn ammonia into nitrite and then into much less
    harmful nitrate. Those bacteria take several weeks to become established. You can
    start the process by adding a small pinch of fish food every day and measuring ammonia
    and nitrite with a test kit. When both read zero for several days in a row, add a few
    hardy fish first, and build up slowly.
    """,
    """
    To stop a dripping compression faucet, first turn off the water supply under the sink
    and open the tap to drain the line. Put the plug in the drain so that small parts
    cannot fall in. Pry off the decorative cap on the handle, remove the screw beneath it,
    and pull the handle off. Use an adjustable wrench to unscrew the packing nut and lift
    out the stem. At the bottom of the stem you will find a rubber washer held by a brass
    screw; a worn or cracked washer is the usual cause of a drip. Take the old washer to a
    hardware store to match the size, fit the new one, and reassemble the faucet in
    reverse order.
    """,
    """
    Clearing out a closet works best in a single focused session. Take everything out,
    all of it, and put it on the bed so you are forced to deal with it before you sleep.
    Make three piles: keep, donate, and discard. Be honest about clothes that do not fit
    or that you have not worn in a year. Before putting anything back, wipe down the
    shelves and think about how you actually use the space. Hang the things you wear most
    at eye level, store seasonal items up high, and group similar pieces together so you
    can see what you own. Take the donation bags to the car immediately, before you have
    a chance to change your mind.
    """,
    """
    Before a job interview, read the job description closely and pick out the three or
    four skills the employer seems to care about most. For each one, prepare a short story
    from your own experience that shows the skill in action: what the situation was, what
    you did, and what happened as a result. Look up the organization's recent news and be
    ready to say why you want to work there in particular. Prepare two or three thoughtful
    questions of your own about the team or the work. On the day, arrive ten minutes
    early, or log in early if the interview is online, and check that your camera and
    microphone work.
    """,
    """
    Washing your hands properly takes longer than most people think. Wet your hands with
    clean running water, turn off the tap, and apply soap. Rub your palms together, then
    rub the back of each hand with the palm of the other, interlacing your fingers. Scrub
    between the fingers, around each thumb, and under the nails by rubbing your fingertips
    in the opposite palm. Keep going for at least twenty seconds, roughly the time it takes
    to hum the birthday song twice. Rinse well under running water and dry your hands with
    a clean towel or let them air dry. Soap works by breaking apart the oily outer layer
    of many germs and lifting dirt away.
    """,
]

# Short narratives
ENGLISH += [
    """
    The dog had been missing for three days when Mrs. Okafor stopped putting out his
    bowl. She told herself it was practical; the food only attracted ants. On the fourth
    morning, though, she heard scratching at the back gate and went out in her dressing
    gown without thinking. There he was, thinner, one ear torn, burrs matted into the fur
    along his belly, wagging so hard his whole back end swung from side to side. She knelt
    on the wet paving stones and let him lick her face, something she had never allowed
    in nine years. Later, cleaning the cut on his ear, she found a length of blue nylon
    rope still knotted around his collar, chewed clean through.
    """,
    """
    My grandmother never wrote her recipes down. When I asked how much flour went into her
    dumplings, she would look at me as if I had asked how many breaths she took in a day.
    "Enough," she said. So the winter before she moved into the care home, I stood beside
    her in the kitchen with a notebook and a kitchen scale, and every time she reached for
    something I weighed it first. She tolerated this with amusement. The notebook is
    stained now and the pages have gone soft. I have made the dumplings perhaps fifty times
    since then, and they are good, but they are not hers, and I have come to think the
    missing ingredient was never something I could have weighed.
    """,
    """
    The train stopped between stations at twenty past six and did not move again for an
    hour. At first nobody spoke. People checked their phones, sighed, and looked at the
    ceiling as though an explanation might be printed there. Then the man across the aisle
    from me, who had been reading a paperback about birds, pointed out of the window and
    said, "Heron." Everyone turned. A gray heron was standing in the drainage ditch beside
    the track, perfectly still, ignoring us. Somebody laughed. A woman further down
    produced a bag of clementines and passed them around. By the time the lights
    flickered and the train lurched forward, half the carriage knew each other's names.
    """,
    """
    On her first day at the new school, Lina ate lunch in a toilet cubicle because she
    could not face walking into the dining hall alone. On the second day she made herself
    go in, carried her tray to the end of a long table, and sat down next to a boy who was
    drawing dragons on a napkin. She watched him for a while. "The wings are wrong," she
    said finally. "Bats have fingers in their wings. Dragons probably would too." He
    looked at her, then at the napkin, and slid it across the table with the pen. By the
    end of lunch the napkin was covered in clawed, webbed wings, and she had forgotten to
    be afraid.
    """,
    """
    The storm reached the island just after dark. Tomas had tied down everything he could
    think of, but the wind found things he had forgotten: a bucket went clattering across
    the yard, and the gate to the goat pen banged open and shut until he went out with a
    lantern and wired it closed. Rain came sideways, stinging his face. Inside, the
    kerosene lamp threw his shadow huge against the wall, and the whole house creaked like
    a ship. Around two in the morning the wind suddenly dropped to nothing, and he stepped
    outside to see stars directly overhead. He knew enough to go back in. It was the eye,
    and the second half was coming.
    """,
    """
    At four in the morning the bakery on Corso Street is the only lit window on the block.
    Inside, Marco has been working for an hour already. The first batch of dough, mixed
    the night before and left to rise slowly in the cold, sits in floured baskets along
    the counter. He tips each loaf onto a wooden peel, slashes the top with a razor in one
    quick stroke, and slides it into the oven. Steam hisses. He does not need a timer; he
    listens for the faint crackle the crust makes when it is ready and taps the underside
    of each loaf to hear whether it sounds hollow. By six, when the first customers knock,
    the shelves are full.
    """,
    """
    Daniel had wanted to run a marathon since he was twelve, and at forty-three he finally
    stood at the start line, shivering in a bin bag with nine thousand strangers. The first
    half went better than he had dared to hope. At the twentieth mile, his legs simply
    stopped cooperating. He walked, then shuffled, then walked again, while people he had
    passed an hour earlier went by. A little girl at the roadside held out a tray of
    orange slices and shouted his name, which was printed on his shirt, as if she had
    known him all her life. He took a slice, and somehow, for the last three miles, he ran.
    """,
    """
    When the power went out in our building, it went out for two days. By the first
    evening the lifts were dead, the fridges were warming, and the stairwells were pitch
    black. The retired electrician on the fourth floor went from door to door with a head
    torch and a notebook, writing down who needed medicine kept cold and who could not
    manage the stairs. The family on the second floor, who owned a camping stove, cooked a
    huge pot of lentils and invited anyone who wanted some. By the second night, someone
    had carried a guitar down to the courtyard. When the lights came back, there was a
    cheer, and then, I think, a small feeling of loss.
    """,
    """
    The old men who play chess in the park under the plane trees do not welcome
    strangers, but they tolerate them if they are quiet. I watched for three weeks before
    anyone spoke to me. Then one afternoon a player with a white moustache and a cardigan
    buttoned wrong looked up and said, "You. Sit." I lost in nineteen moves. He reset the
    pieces without a word and we played again, and I lost in thirty-one. "Better," he said.
    I have been going back every Saturday since. I still lose almost every game, but last
    month I won one, and the whole bench applauded, and he pretended to be furious.
    """,
    """
    In a secondhand copy of a gardening book I found a letter folded into the chapter on
    roses. It was dated 1962 and written in blue ink in a careful, looping hand. The writer
    thanked someone named Edith for the cuttings, reported that three of the five had
    taken, and described a late frost that had blackened the new growth. Near the end the
    tone changed. "I know you said not to worry," the writer wrote, "but I do, and I will,
    and you must let me." There was no signature, only an initial, M. I have kept the
    letter in the book, in the chapter where I found it.
    """,
    """
    Ana learned to ride a bicycle the summer she turned nine, later than everyone else on
    her street. Her father ran behind her holding the back of the seat, puffing and
    promising he would not let go. She wobbled down the path, past the postbox and the
    neighbor's hedge, concentrating so hard on the handlebars that she did not notice the
    voice behind her growing fainter. At the corner she turned to say something and saw him
    standing thirty meters back with his hands on his knees, grinning. She fell off
    immediately, of course. But she had been riding on her own, and they both knew it, and
    after that there was no stopping her.
    """,
    """
    The night shift on the children's ward starts quietly. Nurse Adeyemi does her first
    round at eleven, checking drips and writing numbers on charts by the glow of a small
    torch. At two, a toddler with a fever wakes and will not settle, so she walks the
    corridor with him on her hip, humming a song her own mother used to sing. At four, a
    monitor alarms and her heart jumps, but it is only a loose sensor. By six the windows
    turn gray, breakfast trolleys rattle, and the day staff arrive with coffee. She hands
    over each patient carefully, names and numbers and small worries, and goes home to
    sleep through the bright morning.
    """,
    """
    We moved to the city in January, which everyone told us was the worst possible month.
    The flat had high ceilings and radiators that knocked like someone trying to get in.
    For weeks I knew nobody except the man at the corner shop, who sold me bread and milk
    and commented on the weather with great seriousness. I learned the bus routes by
    getting on the wrong buses. I learned which cafes let you sit for hours over one cup.
    In March the trees along the canal came into blossom all at once, and walking home one
    evening under them I realized that I had stopped using the map on my phone.
    """,
    """
    The fisherman left the harbor before dawn, as he had for thirty years, and by sunrise
    he was three miles out, hauling the first pots. Most held nothing but weed and a few
    undersized crabs that he dropped back into the sea. The fourth held a lobster so large
    he had to use both hands to lift it out, its shell blue-black and crusted with small
    barnacles. He guessed it was older than his grandson. He turned it over, looked at it
    for a long moment, and checked for the notch that would mark a breeding female. There
    was one. He lowered her back over the side and watched her sink out of sight.
    """,
    """
    Priya's painting had been hanging in the café for two months without selling, and she
    had started to avoid walking past. On the last day of the exhibition the owner called
    her. A man had come in every morning for a week, ordered the same coffee, and sat at
    the table beneath her picture of the estuary at low tide. That morning he had finally
    asked the price. He wanted to know where it had been painted, and when she told him,
    he was quiet for a while. He had grown up in a cottage on that shore, he said, and had
    not been back in forty years.
    """,
    """
    The keeper of the lighthouse on Morrow Point kept a log for twenty-two years, and most
    of the entries are about the weather. Wind northwest, fresh. Fog from noon. Glass
    falling. Every few pages, though, something else creeps in. A seal asleep on the
    landing steps. Lamp smoking, trimmed wick twice. Supply boat late again, down to the
    last of the flour. In the winter of 1911 there is an entry that simply reads: Ship's
    lights to the south, close in, sounded horn until she turned. The next line, in the
    same steady hand, goes back to wind and swell, as if nothing had happened at all.
    """,
    """
    The market opens at seven, but the traders are there by five, unfolding tables and
    stacking crates in the blue half-light. The cheese seller sets out her wheels in order
    of age. The man with the mushrooms arranges them by color, from pale oyster to nearly
    black, on a bed of damp moss. Someone's radio plays old songs. By eight the aisles are
    full of people with canvas bags and small dogs. A child is given a cherry tomato to
    taste and makes a face, then holds out her hand for another. By noon the best of
    everything is gone, and the traders are haggling with each other over what is left.
    """,
    """
    The beekeeper opened the first hive slowly, lifting the lid with a flat metal tool and
    setting it on the grass. A soft roar rose from inside, not angry, just busy. She
    puffed a little cool smoke across the top bars and waited. Then she lifted out a frame,
    heavy and golden at the top where the comb was capped with white wax, and held it up
    to the light to look for the queen. Bees walked over her gloves and along her sleeves.
    She spoke to them as she worked, quietly, the way her uncle had taught her, telling
    them about the weather and about who had been born and who had died.
    """,
    """
    Halfway through the night hike, the group's only working torch died. For a moment
    everyone stood still, the dark pressing close. Then, slowly, their eyes adjusted. The
    path became a pale ribbon between the black masses of the trees, and above them the
    sky was thick with stars, far more than anyone had ever seen from town. Someone
    noticed that the moss on the fallen logs was faintly glowing, a cold green light that
    came from a fungus. Nobody suggested using their phones. They walked the rest of the
    way in silence, carefully, holding the straps of each other's backpacks.
    """,
    """
    After the funeral, the brothers went through their father's workshop together. It was
    exactly as he had left it: chisels hung on the wall in order of size, jars of screws
    sorted and labeled, a half-finished chair clamped on the bench. Neither of them knew
    what the chair was for. Under the bench they found a box of drawings, dozens of them,
    each a careful plan of a piece of furniture with measurements in pencil. Most had been
    built and were in their own houses. The last sheet showed the chair on the bench. In
    the corner he had written both their names.
    """,
]

# Dialogue
ENGLISH += [
    """
    "So what's the verdict?" Hannah asked, leaning on the counter.

    The mechanic wiped his hands on a rag. "Good news and bad news. Good news, the engine's
    fine. That noise you heard is the heat shield under the exhaust. One of the bolts
    rusted through, so it's rattling against the pipe."

    "And the bad news?"

    "Your front brake pads are almost gone. Another few hundred miles and you'd be grinding
    metal on metal, and then we're talking new rotors too."

    Hannah winced. "How much for both?"

    "Heat shield's a ten-minute job, I'll do that for nothing. Pads, about a hundred and
    forty with labor. I can have it ready by four."

    "Do it," she said. "I'd rather pay now than later."
    """,
    """
    "We have four days," Sam said, spreading the map across the table. "If we drive to the
    coast on Friday, we could do the cliff path on Saturday."

    "That's the one with the ferry at the end?" Jo asked.

    "Right. The ferry only runs twice a day out of season, so we'd need to catch the three
    o'clock or we're stuck walking back."

    "How long is the walk?"

    "Fourteen miles. It's hilly, but the guidebook says six or seven hours."

    Jo frowned. "If we start at eight, that's cutting it close for three."

    "Then we start at seven."

    "You say that now," Jo said, "but I've seen you in the mornings."
    """,
    """
    "How long have you had the cough?" the doctor asked.

    "About three weeks. It started with a cold, and the cold went away, but the cough just
    stayed."

    "Is it dry, or are you bringing anything up?"

    "Mostly dry. It's worse at night, and when I go outside into cold air."

    "Any fever, chest pain, shortness of breath when you climb stairs?"

    "No fever. I get a bit breathless, but I thought that was just the coughing."

    The doctor nodded and reached for her stethoscope. "A cough that lingers after a
    virus is very common, and often the airways stay irritated for a while. But I'd like
    to listen to your chest, and given the breathlessness and the cold air, I want to rule
    out asthma. Can you take a deep breath for me?"
    """,
    """
    "I don't understand why we have to show our working," Leo said. "I got the right
    answer."

    Ms. Varga pulled up a chair beside his desk. "You did. How did you get it?"

    "I just knew. Forty-eight divided by six is eight."

    "Fine. Now what about this one? Four hundred and eighty-three divided by twenty-one."

    Leo stared at it. "That's not fair, that's hard."

    "Exactly. When the problems get harder, you can't just know anymore. Writing the steps
    is how you keep track, and it's how I can see where something went wrong, if it does.
    If I only see a wrong answer, I can't help you."

    Leo sighed and picked up his pencil. "Twenty-one goes into forty-eight twice," he
    muttered.
    """,
    """
    "Tell me about a time you disagreed with a colleague," the interviewer said.

    Marcus thought for a moment. "At my last job, a developer on my team wanted to rewrite
    our billing module from scratch. I thought it was too risky so close to the end of the
    financial year."

    "What did you do?"

    "I asked him to write down what problems the rewrite would fix, and I wrote down the
    risks I saw. When we put the two lists side by side, it turned out most of his problems
    could be fixed with two smaller changes. We did those first and scheduled the rewrite
    for the quiet season."

    "And did the rewrite happen?"

    "It did, in April. It went smoothly, partly because the smaller changes had taught us
    a lot about the old code."
    """,
    """
    "Can we keep him?" Maya asked, holding the kitten up to the window as if her mother
    might not have noticed it.

    "Where did he come from?"

    "He was under the Hendersons' car. He was crying. I think he's lost."

    Her mother crouched to look. The kitten was gray, all ears and bones, and purring
    loudly. "He might belong to somebody. First we put up signs and ask around the street.
    If nobody claims him in a week, we'll talk about it."

    "And if nobody does?"

    "Then you'll be the one feeding him, and cleaning his litter, every day. Not just
    when you feel like it."

    Maya nodded so fast the kitten squeaked. "Every day," she said. "I promise."
    """,
    """
    "Hello, I'm calling about my internet connection. It keeps dropping every evening."

    "I'm sorry to hear that. Can I take your account number, please?"

    "It's 4471 0926."

    "Thank you. I can see your line, and there's nothing reported in your area. When it
    drops, do the lights on your router change?"

    "The one that looks like a globe turns orange for a minute, then goes green again."

    "That sounds like the router is losing sync with the line. Is it connected through
    any extension cables, or directly into the main socket?"

    "There's an extension. It goes behind the sofa."

    "Could you try plugging it straight into the main socket for a couple of days? Old
    extension cables are a very common cause of this. If it still drops, call us back and
    I'll book an engineer."
    """,
    """
    "Taste this," Chef Moreau said, holding out a spoon of sauce.

    The apprentice tasted it carefully. "It's good."

    "Good is not an answer. What does it need?"

    He tasted again, frowning. "Salt?"

    "A little. What else?"

    "It's heavy. It sits at the back of my tongue."

    "Yes. So it needs acid to lift it. A few drops of lemon, or a splash of the white
    wine. Go on, you decide."

    The apprentice added three drops of lemon juice, stirred, and tasted a third time. His
    eyebrows rose.

    "You see?" Moreau said. "Now it's awake. Always ask what a dish needs, not whether you
    like it. Liking it is for the customer."
    """,
    """
    "Excuse me, I'm looking for a book my daughter mentioned, but I don't remember the
    title."

    The librarian smiled. "That happens more than you'd think. What do you remember about
    it?"

    "It's about a girl who lives in a lighthouse, and there's a storm, and I think a
    whale? The cover is blue."

    "Is it for young readers, maybe eight to ten?"

    "Yes, she's nine."

    The librarian typed for a moment. "There are a couple of possibilities. One of them is
    on the shelf right now, in the children's section, under the window. Let's go and look,
    and if it's not the one, I can reserve the other for you. It's at our branch across
    town but can be here in two days."
    """,
    """
    "Morning, Phil. Got a minute about the fence?"

    "Morning, Gwen. The fence? What about it?"

    "The panel near the apple tree is leaning right over onto my side. I'm worried the
    next big wind will bring it down on my greenhouse."

    Phil walked over and pushed the panel gently. It swayed. "Huh. The post's rotten at
    the bottom. I hadn't noticed."

    "I think it's yours, isn't it? The deeds say the left-hand fence belongs to your
    house."

    "That's right. I'll get a new post this weekend. Would you mind if my son came round
    your side to help hold it while we set it in concrete?"

    "Of course not. I'll put the kettle on."
    """,
]

# Letters and emails
ENGLISH += [
    """
    Dear Mr. Castellanos,

    I am writing about the heating in flat 3B, which I rent from you. Since the start of
    November the radiators in the bedroom and living room have been only lukewarm, even
    with the thermostat at its highest setting. I reported this by phone on the 4th and
    the 12th, and I was told both times that someone would come to look at it, but nobody
    has visited yet.

    The temperature in the flat has been dropping to around fourteen degrees overnight,
    and with a young child at home this is becoming a real concern. I would be grateful if
    you could arrange for a heating engineer to call within the next seven days. I am at
    home most afternoons and can be flexible about timing.

    Thank you for your attention to this.

    Yours sincerely,
    Aisha Rahman
    """,
    """
    Dear Mrs. Lindqvist,

    You probably do not remember me. I was in your Year Nine English class nearly twenty
    years ago, the quiet boy at the back who never handed in his homework on time. I am
    writing because last week my first novel was accepted by a publisher, and I wanted you
    to know that it started in your classroom.

    You once kept me behind after a lesson and, instead of telling me off, asked why I
    seemed so bored. When I admitted that I wrote stories at home, you asked to read one.
    You gave it back covered in notes and told me to keep going. Nobody had ever taken my
    writing seriously before.

    Thank you for noticing. I have thought about that conversation more times than I can
    count.

    With warm regards,
    Jonah Peretz
    """,
    """
    Dear Kenji,

    Thank you for your last letter and for the photos of the festival. The lanterns on
    the river looked magical. Here it has been raining for a week, so I have mostly been
    indoors practicing the violin for my exam next month. I have to play a scale in
    thirds, which sounds easy but is not.

    You asked what a normal school day is like for me. We start at quarter to nine and
    finish at half past three. We have a long break in the middle of the morning and an
    hour for lunch. My favorite subject is biology, because this term we are dissecting
    things, which my sister thinks is disgusting.

    Do you think you will be able to visit next summer? My mother says you would be very
    welcome to stay with us.

    Your friend,
    Clara
    """,
    """
    Dear Ms. Obi,

    Please accept this letter as formal notice of my resignation from my position as
    Senior Accountant. My last working day will be Friday, 28 March, four weeks from
    today, in line with my contract.

    I have accepted a role that will allow me to move closer to my family, and it was not
    an easy decision. I have learned a great deal in my six years here, and I am
    especially grateful for the support you gave me while I studied for my professional
    qualifications.

    I will do everything I can to make the handover smooth. I suggest that I prepare
    written notes on the month-end process and the audit schedule, and I would be happy to
    help train whoever takes over my responsibilities.

    Thank you again for the opportunities you have given me.

    Kind regards,
    Samuel Achterberg
    """,
    """
    To the Members of the City Council,

    I am writing as a resident of Elm Ward and as someone who cycles to work every day,
    to ask you to support the proposed protected bike lane on Harbour Road.

    At present, cyclists on Harbour Road share a narrow lane with buses and delivery
    vehicles. In the last two years I have personally witnessed three collisions there,
    one of which sent a teenager to hospital. Many parents I know would like their
    children to cycle to the secondary school on that road but will not allow it because
    it is simply too dangerous.

    The plan would remove eleven parking spaces. I understand that local businesses are
    worried about this, but studies from other cities suggest that people on bicycles
    tend to visit shops more often, even if they spend a little less each time.

    Yours faithfully,
    Rosa Delgado
    """,
    """
    Hi Tom,

    Just a quick note to say sorry about last night. I was tired and short-tempered, and
    I took it out on you when you were only trying to help with the spreadsheet. That
    wasn't fair, and I know it's not the first time this month.

    Work has been a lot lately, but that isn't your problem to absorb. I've booked Friday
    afternoon off so I can finally catch up, and I'm hoping that will take some of the
    pressure off.

    Can I buy you dinner at the Thai place on Saturday to make up for it? Your choice of
    table, and I promise not to talk about quarterly reports.

    Sarah
    """,
    """
    To whom it may concern,

    I am pleased to recommend Ms. Elif Kaya, who worked as a research assistant in my
    laboratory for two years while completing her master's degree.

    Elif joined a project studying soil bacteria that break down agricultural pesticides.
    Within her first six months she had redesigned our sampling protocol, which cut our
    processing time nearly in half, and she trained two new students to use it. She is
    careful and methodical at the bench, but what sets her apart is her curiosity: she
    reads widely, asks sharp questions in lab meetings, and is not discouraged when an
    experiment fails.

    She would be an excellent doctoral student, and I recommend her without reservation.
    Please feel free to contact me if you need any further information.

    Sincerely,
    Professor Martin Hale
    """,
    """
    Dear future me,

    It is the first day of the new year, and I am sitting on the balcony with a cup of tea
    that has already gone cold. I am writing this so that in ten years you can tell me how
    it all turned out.

    Right now I am twenty-six. I have a job I am good at but do not love, a flat with a
    leaking window, and a plant that refuses to die no matter how much I neglect it. I
    want to learn Portuguese properly, to run a half marathon, and to stop saying yes to
    things I do not want to do.

    I hope you are kinder to yourself than I am. I hope you still have the plant. And if
    none of these plans worked out, I hope you found better ones.

    Love,
    Me
    """,
]

# News-style reports
ENGLISH += [
    """
    The new public library in Westbrook opened its doors on Saturday after two years of
    construction, drawing a crowd of several hundred people despite steady rain. The
    three-story building replaces a branch that had operated out of a converted shop since
    the 1970s. It includes a children's floor with a reading garden, twelve bookable study
    rooms, a recording studio, and a makerspace with 3D printers and sewing machines. The
    project cost 14 million dollars, most of it funded by a bond measure approved by
    voters in 2021. Head librarian Grace Mwangi said more than four hundred new library
    cards were issued on opening day alone. The library will be open seven days a week,
    with late hours on Tuesdays and Thursdays.
    """,
    """
    Residents of the river valley woke to flooded roads on Tuesday after the heaviest
    rainfall recorded in the area in more than sixty years. The regional weather service
    measured 142 millimeters of rain in twenty-four hours at the airport station, breaking
    the previous record set in 1958. Emergency crews rescued eleven people from stranded
    vehicles, and around three hundred homes lost power for several hours. No serious
    injuries were reported. Schools in four districts were closed, and the main bridge
    into town was shut while engineers inspected it for damage. Forecasters expect drier
    weather from Thursday but warned that river levels may keep rising for another day as
    water drains from the hills.
    """,
    """
    The Harbor City Hawks won their first regional championship in nineteen years on
    Sunday, beating the Northgate Foxes 3 to 2 in a tense final that went to extra time.
    The Foxes led twice, but the Hawks equalized both times, the second through a header
    from defender Luis Paredes in the eighty-eighth minute. The winning goal came in the
    hundred and fourth minute when midfielder Anna Kowalczyk curled a free kick into the
    top corner. Coach Derek Amos, who took over the struggling team only eighteen months
    ago, praised his players' patience. "We never panicked," he said. A victory parade is
    planned for Wednesday evening along the waterfront.
    """,
    """
    The Mill Street bridge will close to all traffic for six weeks starting on Monday
    while crews replace its deck and repair corroded steel supports, the city's transport
    department announced. Drivers will be diverted along Canal Road and the ring road, and
    officials warned of delays of up to twenty minutes at peak times. Pedestrians and
    cyclists will be able to use a temporary footbridge alongside the main span from the
    second week. The number 14 and 22 bus routes will be rerouted for the duration. The
    bridge, built in 1964, carries about eighteen thousand vehicles a day. Inspections
    last year found that several beams had lost a significant amount of their original
    thickness to rust.
    """,
    """
    More than two hundred students from eleven schools took part in the county science
    fair at the community college on Friday. Projects ranged from homemade water filters
    and solar-powered phone chargers to a study of how different types of music affect the
    growth of bean plants. The top prize went to fifteen-year-old Isabel Tran, who built a
    low-cost sensor that detects when a river is rising and sends text message alerts to
    nearby residents. Judges praised the project for addressing a real local problem.
    Isabel said she was inspired by flooding near her grandmother's house last spring. She
    will represent the county at the state competition in April.
    """,
    """
    The Saturday farmers market in Oak Park will move to a larger site and add a second
    weekly market on Wednesday evenings starting next month, organizers announced. The
    market has grown from twelve stalls when it launched five years ago to more than sixty
    today, and it has outgrown the church parking lot where it is currently held. The new
    location, at the edge of Lincoln Field, has room for up to ninety vendors, as well as
    picnic tables and a small stage for local musicians. The Wednesday market will run from
    four to eight in the evening and will focus on prepared food. Organizers say they also
    plan to accept food assistance benefits at every stall.
    """,
    """
    The Municipal Museum of Art has acquired a large collection of photographs documenting
    life in the city's docks between 1930 and 1970, the museum said on Thursday. The
    collection, about two thousand prints and negatives, was taken by a dockworker named
    Walter Briggs, who photographed his colleagues during breaks and after shifts using a
    secondhand camera. The images were discovered in his granddaughter's attic last year.
    Curators say they offer a rare inside view of the work, which until now was mostly
    recorded by outside press photographers. A selection of fifty prints will go on
    display in the spring, and the museum plans to put the whole archive online.
    """,
    """
    A new express bus route linking the eastern suburbs with the city center and the
    university will begin service on 3 September, the regional transit authority said
    this week. Route X5 will make only seven stops and is expected to cut the journey
    time from Hillcrest to the central station from fifty-five minutes to about thirty.
    Buses will run every ten minutes during the morning and evening rush hours and every
    twenty minutes at other times. The service will use twelve new battery-electric
    vehicles. Transit officials said the route was chosen after a survey showed that more
    than a third of Hillcrest residents commute to the center, most of them by car.
    """,
    """
    Walkers on the coastal path near Port Elm were treated to an unusual sight on Sunday
    when a pod of around thirty dolphins spent more than an hour feeding close to the
    shore. Local wildlife volunteers believe the animals were following a large shoal of
    mackerel into the bay. Videos shared by onlookers show the dolphins leaping clear of
    the water, some within fifty meters of the rocks. Marine experts say sightings of
    large groups have become more frequent along this stretch of coast in recent summers.
    They reminded boat owners to keep a distance of at least one hundred meters and never
    to chase or try to swim with the animals.
    """,
    """
    About one hundred and fifty volunteers collected more than two tonnes of rubbish from
    the banks of the Wren River on Saturday, in the largest clean-up the town has seen.
    Working in teams along a six-kilometer stretch, they pulled out plastic bottles, food
    wrappers, fishing line, three bicycles, a sofa and a shopping trolley. The event was
    organized by a group of secondary school students who started the project after
    noticing how much litter washed up near their school after storms. The town council
    provided gloves, bags and a skip. Organizers plan to repeat the clean-up every spring
    and autumn, and they have asked the council to install more bins along the path.
    """,
    """
    The national weather service has issued a heat advisory for the southern counties
    from Wednesday to Saturday, with daytime temperatures expected to reach thirty-nine
    degrees Celsius and little relief overnight. Health officials urged residents to drink
    plenty of water, avoid strenuous activity during the hottest part of the day, and
    check on elderly neighbors and people who live alone. Cooling centers will open at
    libraries and community halls across the region. Pet owners are reminded never to
    leave animals in parked cars, where temperatures can become deadly within minutes.
    Outdoor events scheduled for the weekend, including the summer fair in Marlow, may be
    moved to the evening.
    """,
    """
    The town council voted on Monday night to approve a budget of 48 million dollars for
    the coming year, an increase of four percent. The largest share will go to road
    maintenance and to hiring six additional firefighters, after a report found that
    response times in the northern neighborhoods were well above the regional average.
    Funding for the public pool was restored after more than a hundred residents signed a
    petition opposing its proposed closure. To cover the increase, property taxes will rise
    by about two percent, which officials estimate will cost the average household around
    sixty dollars a year. The vote passed seven to two.
    """,
]

# Other everyday genres: reviews, recipes, essays, notices, diaries, speeches
ENGLISH += [
    """
    I bought this kettle to replace one that lasted eleven years, and after three months
    I have mixed feelings. The good: it boils a full liter in just under three minutes,
    the variable temperature settings are genuinely useful for green tea, and the
    keep-warm function works as advertised. It is also quieter than my old one. The not so
    good: the lid hinge already feels loose, and the stainless steel body gets hot enough
    to burn your fingers if you grab it carelessly. The water window is on the back, which
    is an odd choice for anyone who is right-handed. Overall it does its main job well,
    but for the price I expected better build quality. Three stars.
    """,
    """
    Lentil soup for four. Heat two tablespoons of olive oil in a large pot over medium
    heat. Add one chopped onion, two diced carrots and two sliced celery sticks, and cook
    for about eight minutes until soft. Stir in two crushed garlic cloves, a teaspoon of
    ground cumin and half a teaspoon of smoked paprika, and cook for one more minute. Add
    two hundred grams of rinsed red lentils, a tin of chopped tomatoes and a liter of
    vegetable stock. Bring to a boil, then lower the heat and simmer for twenty-five
    minutes, stirring now and then, until the lentils have fallen apart. Season with salt,
    pepper and a good squeeze of lemon. Blend half of it if you prefer a thicker soup.
    """,
    """
    Cities should make public transport free, or close to it. The usual objection is
    cost, but fares already cover only a fraction of the cost of running most bus
    networks, and collecting them is not free either: ticket machines, inspectors and
    payment systems all cost money, and boarding is slower when every passenger has to
    pay. Meanwhile, every person who leaves the car at home reduces congestion, pollution
    and wear on the roads, which the city also pays for. Free fares would help the people
    who most need it, such as students, low-paid workers and pensioners. The money would
    be better spent than many of the road projects we fund without a second thought.
    """,
    """
    Day 4, Kyoto. Woke at six to beat the crowds at Fushimi Inari and it was worth it.
    The path of orange gates winds up the mountain for hours, and at that hour there were
    only a few joggers and an old man sweeping leaves. The higher I climbed, the fewer
    people I saw, and the quieter it became. Small shrines everywhere, covered in moss,
    with tiny fox statues wearing red bibs. Came down at ten to find the bottom completely
    packed with tour groups. Had a bowl of udon in a tiny shop with six seats, where the
    owner drew me a map to a bathhouse. My legs are destroyed. Tomorrow: the bamboo grove.
    """,
    """
    Minutes of the Greenfield Community Garden committee meeting, held 12 May. Present:
    seven members; apologies from two. The treasurer reported a balance of 1,240 dollars
    after the purchase of a new water tank. The committee agreed to spend up to 300 dollars
    on raised beds for members who use wheelchairs, with construction planned for the
    June work day. There was discussion about the waiting list, which now has
    twenty-three names. It was agreed to split three of the largest plots in half when
    their current holders renew. A reminder will be sent about the rule against using
    chemical weedkillers. The next meeting will be held on 9 June at the garden shed.
    """,
    """
    This copper cooking pot was made in a village workshop around 1880 and used by the
    same family for more than a century. The body was hammered from a single sheet of
    copper, and you can still see the small dents left by the coppersmith's hammer around
    the rim. The inside was coated with a thin layer of tin, because acidic foods cooked
    directly in copper can become harmful. Tin wears away with use, so every few years the
    pot would have been taken to a traveling tinsmith to be re-coated. The patched handle
    on the right was repaired at least twice. The pot was donated to the museum by the
    great-granddaughter of its first owner.
    """,
    """
    Margaret Ellery was born in 1921 in a small mining town and left school at fourteen
    to work in a telephone exchange. During the war she trained as a radio operator and
    was posted to a coastal station, where she intercepted coded messages from ships at
    sea. She rarely spoke about that work, which remained secret for decades. Afterward she
    studied mathematics at night school while raising three children and, at forty-five,
    became one of the first women to teach computer programming at the regional technical
    college. Former students remember her as demanding and funny, and for her habit of
    insisting that every program be traced by hand on paper before it touched a machine.
    """,
    """
    Frequently asked questions about the community swimming pool. Do I need to book?
    Lane swimming sessions must be booked online up to seven days in advance, but family
    sessions on weekends are first come, first served. Can children swim on their own?
    Children under eight must be accompanied in the water by an adult, and children under
    sixteen must have an adult present in the building. Are there lockers? Yes, the
    lockers take a one-dollar coin that is returned when you open them. Can I bring my own
    float or goggles? Goggles are welcome, but large inflatables are only allowed during
    the Saturday afternoon fun session.
    """,
    """
    The novel follows a retired ferry captain who agrees, reluctantly, to take a group of
    strangers across a flooded delta after the bridges have washed away. It is a quiet
    book. Not much happens in the usual sense, and readers expecting an adventure may be
    disappointed. What it does superbly is character. Each passenger is revealed slowly,
    through small gestures and half-finished conversations, and by the end I felt I knew
    them better than some people in my own life. The prose is spare, almost plain, but it
    builds real tension from very little. My only complaint is the ending, which felt
    rushed after such a patient journey. Still, highly recommended.
    """,
    """
    Is it better to be busy? We often treat a full calendar as a sign of a good life, and
    when someone asks how we are, "busy" has become a kind of boast. But being busy says
    nothing about whether the things filling our days matter to us. Some of the most
    important work people do, such as thinking through a hard problem, listening to a
    friend, or simply noticing the world, looks from the outside exactly like doing
    nothing. Perhaps the question to ask at the end of a week is not how much we managed
    to do, but whether we spent our attention on the things we would choose if we stopped
    to think about it.
    """,
    """
    Here is the forecast for the weekend. Saturday will start cloudy with a few showers in
    the west, clearing to sunny spells by the afternoon. Highs of around seventeen degrees,
    with a light breeze from the southwest. Saturday night will be mostly clear and chilly,
    with a risk of fog in sheltered valleys and lows near five degrees. Sunday looks like
    the better day, dry and bright for most of us, with temperatures climbing to nineteen
    or twenty in the east. Cloud will thicken from the west in the evening, bringing
    outbreaks of rain overnight and into Monday morning's rush hour, so keep an umbrella
    handy for the start of the week.
    """,
    """
    Attention, passengers. The 10:42 service to Northfield is running approximately
    twenty-five minutes late due to a signal failure near Bramley. We apologize for the
    delay. Passengers for Northfield, Ashdown and Kingsmere may also travel on the 10:55
    service from platform four, changing at Bramley Junction, where your tickets will be
    accepted. Please listen for further announcements, as platform allocations may change
    at short notice. Passengers requiring assistance are asked to speak to a member of
    staff at the ticket office. For your safety, please keep your belongings with you at
    all times and stand behind the yellow line.
    """,
    """
    Before first use, charge the device for at least three hours using the supplied
    cable. The indicator light will glow red while charging and turn green when the battery
    is full. To switch the device on, press and hold the power button for two seconds
    until you hear a short tone. To pair it with your phone, make sure Bluetooth is turned
    on, then press the power button twice quickly; the light will flash blue. Select the
    device from the list on your phone. If pairing fails, switch the device off, wait ten
    seconds, and try again. Do not leave the device in direct sunlight or in a closed car,
    as high temperatures can damage the battery.
    """,
    """
    Osteria Lucia has been open for only four months, but it is already hard to get a
    table on a Friday, and after our visit I understand why. The menu is short, which is
    always a good sign, and changes weekly. We started with grilled sardines on toast that
    tasted of the sea and charcoal, and a plate of fried zucchini flowers stuffed with
    ricotta. The hand-cut pasta with slow-cooked lamb was the highlight, rich without being
    heavy. Service was warm if a little slow when the room filled up. Desserts were
    simpler, a good lemon tart and an ordinary tiramisu. Prices are fair for the quality.
    We will be back.
    """,
    """
    Arthur Penhaligon, who repaired clocks and watches in the same small shop on Tanner
    Lane for fifty-two years, has died at the age of eighty-seven. Born above the shop,
    which his father had opened, he took over the business at twenty and refused every
    offer to sell it. Customers brought him everything from cheap wristwatches to
    eighteenth-century longcase clocks, and he treated them all with the same patience.
    He was known for refusing payment when a repair failed and for leaving notes in the
    back of clocks recording what he had done. He is survived by his daughter, two
    grandsons, and a great many clocks that still keep good time.
    """,
    """
    Tuesday. Rain again. The bus was so full this morning that I had to stand pressed
    against the door with somebody's umbrella dripping into my shoe. Work was long and
    mostly pointless, a three-hour meeting that could have been an email. The one good
    thing: at lunch I finally finished the book Mira lent me and cried at the end in the
    park, which was embarrassing, but nobody noticed because of the rain. Made pasta for
    dinner and called Mum. She says the cat has learned to open the kitchen cupboard. I
    should go to bed earlier, but I know I will not. Tomorrow I will try to leave the
    office on time.
    """,
    """
    Graduates, families, and teachers, thank you for letting me speak today. When I sat
    where you are sitting, thirty years ago, I was certain of two things: that I would
    become a lawyer, and that I would never move back to this town. I was wrong about
    both. I want to tell you that being wrong is not a failure. Most of the best things in
    my life came from plans that fell apart. So my advice is not to follow your dreams,
    exactly, but to follow your curiosity, and to be generous with the people you meet on
    the way. Your plans will change. The friends you make by being kind will not.
    """,
    """
    Dear Advice Column, my best friend and I started a small business together last
    year, and it is going well, but she keeps making decisions without asking me. Last
    week she hired a part-time assistant while I was away. I do not want to lose the
    friendship or the business. What should I do?

    Answer: You are describing two relationships that have become tangled, and it may
    help to separate them. Ask her for a meeting that is only about the business, with an
    agenda, and propose that any decision above a certain cost, or any hiring, needs both
    of your agreement. Put it in writing. It is not a sign of distrust; it protects the
    friendship.
    """,
    """
    The modern bicycle took most of the nineteenth century to invent. The first version,
    built in Germany in 1817, had no pedals at all: riders sat on a wooden frame and
    pushed themselves along with their feet. Pedals attached to the front wheel arrived in
    the 1860s, and because each turn of the pedals turned the wheel only once, designers
    made the front wheel enormous to go faster, producing the high-wheeler, or
    penny-farthing. These machines were fast but dangerous, and falls over the handlebars
    were common. The safety bicycle of the 1880s solved the problem with two wheels of
    equal size and a chain driving the rear wheel, and air-filled tires soon followed.
    """,
    """
    We are looking for a friendly, reliable person to join our small team at the Corner
    Bookshop as a part-time bookseller, working around twenty hours a week including
    Saturdays. You will help customers find books, handle orders and deliveries, keep the
    shelves tidy, and help run our monthly author events and children's story time. No
    previous bookshop experience is needed, but you should enjoy talking to people and
    have a genuine interest in reading. Knowledge of children's or crime fiction would be
    a bonus. The role includes a staff discount and first pick of advance copies. To apply,
    send a short letter telling us about a book you love and why.
    """,
    """
    Most study advice boils down to one surprising finding: rereading your notes is one
    of the least effective ways to learn. It feels productive because the material
    becomes familiar, but familiarity is not the same as being able to recall it. Testing
    yourself works much better. Close the book and try to write down everything you
    remember, or answer practice questions, then check what you missed. It is also better
    to spread study sessions out over days than to cram them into one night, because
    memories strengthen when they are retrieved after a delay. Mixing different types of
    problems, instead of doing twenty of the same kind in a row, helps too.
    """,
    """
    For sale: solid oak dining table with six chairs, about fifteen years old, in good
    condition. The table is 180 centimeters long and 90 wide and seats six comfortably, or
    eight if you do not mind bumping elbows. There are a few light scratches on the top,
    which could easily be sanded out, and one chair has a small repair to the back rail,
    which is sturdy and barely visible. We are selling only because we are moving to a
    smaller flat. Buyer must collect from the ground floor; the table comes apart into two
    pieces for transport. Asking 350 dollars or best offer. Photos available on request.
    """,
    """
    Thank you for shopping with us. Your order number 58213 has been dispatched and should
    arrive within three to five working days. You can follow your parcel using the
    tracking link in this message. If you are not at home when the courier calls, they
    will leave a card with instructions for collecting the parcel from a local pickup
    point, or you can choose a new delivery date online. If any item arrives damaged,
    please keep the packaging and contact us within fourteen days so that we can arrange a
    replacement or a refund. Unused items can be returned free of charge within thirty
    days of delivery.
    """,
    """
    The morning after the first snow, the whole neighborhood sounds different. Snow
    absorbs sound, and the usual traffic is missing, so small noises carry: a shovel
    scraping a path two streets away, a door closing, the squeak of boots on fresh powder.
    Children appear in mismatched gloves, dragging sleds toward the hill behind the
    school. A man in a dressing gown stands on his porch with a coffee, watching his dog
    leap through the drifts and disappear up to its ears. By noon the roads will be gray
    slush and the spell will be broken. For a few hours, though, everything is clean and
    slow and strangely quiet.
    """,
]


# ---------------------------------------------------------------------------
# Code snippets (hand-written for this project): (task, language, code)
# ---------------------------------------------------------------------------

CODE += [
    (
        "Write a Python function that returns the n-th Fibonacci number, using memoization.",
        "python",
        r'''
from functools import lru_cache


@lru_cache(maxsize=None)
def fib(n: int) -> int:
    """Return the n-th Fibonacci number, with fib(0) == 0 and fib(1) == 1."""
    if n < 0:
        raise ValueError("n must be non-negative")
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


print([fib(i) for i in range(10)])  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
''',
    ),
    (
        "Implement binary search over a sorted list in Python, returning the index or -1.",
        "python",
        r"""
def binary_search(items: list[int], target: int) -> int:
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


assert binary_search([1, 3, 5, 7, 9, 11], 7) == 3
assert binary_search([1, 3, 5, 7, 9, 11], 4) == -1
assert binary_search([], 1) == -1
""",
    ),
    (
        "Count the ten most common words in a text file with Python.",
        "python",
        r"""
import re
import sys
from collections import Counter


def top_words(path: str, n: int = 10) -> list[tuple[str, int]]:
    with open(path, encoding="utf-8") as f:
        words = re.findall(r"[a-z']+", f.read().lower())
    return Counter(words).most_common(n)


if __name__ == "__main__":
    for word, count in top_words(sys.argv[1]):
        print(f"{count:6d}  {word}")
""",
    ),
    (
        "Define a Python dataclass for a 2D point with a method that computes the distance to "
        "another point.",
        "python",
        r"""
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    x: float
    y: float

    def distance_to(self, other: "Point") -> float:
        return math.hypot(self.x - other.x, self.y - other.y)

    def __add__(self, other: "Point") -> "Point":
        return Point(self.x + other.x, self.y + other.y)


a, b = Point(0, 0), Point(3, 4)
print(a.distance_to(b))  # 5.0
print(a + b)             # Point(x=3, y=4)
""",
    ),
    (
        "Write a Stack class in Python with push, pop and peek that raises a clear error when "
        "empty.",
        "python",
        r"""
class EmptyStackError(Exception):
    pass


class Stack:
    def __init__(self):
        self._items = []

    def push(self, item):
        self._items.append(item)

    def pop(self):
        if not self._items:
            raise EmptyStackError("pop from an empty stack")
        return self._items.pop()

    def peek(self):
        if not self._items:
            raise EmptyStackError("peek at an empty stack")
        return self._items[-1]

    def __len__(self):
        return len(self._items)
""",
    ),
    (
        "Read a CSV file of sales and print the average amount per region in Python.",
        "python",
        r"""
import csv
from collections import defaultdict


def average_by_region(path):
    totals = defaultdict(float)
    counts = defaultdict(int)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            region = row["region"].strip()
            totals[region] += float(row["amount"])
            counts[region] += 1
    return {region: totals[region] / counts[region] for region in totals}


for region, avg in sorted(average_by_region("sales.csv").items()):
    print(f"{region:<12} {avg:10.2f}")
""",
    ),
    (
        "Flatten an arbitrarily nested list in Python using recursion.",
        "python",
        r'''
def flatten(nested):
    """Yield the non-list elements of a nested list, depth first."""
    for item in nested:
        if isinstance(item, list):
            yield from flatten(item)
        else:
            yield item


data = [1, [2, [3, 4], 5], [], [[6]], 7]
print(list(flatten(data)))  # [1, 2, 3, 4, 5, 6, 7]
''',
    ),
    (
        "Check whether a string is a palindrome, ignoring case, spaces and punctuation.",
        "python",
        r"""
def is_palindrome(text: str) -> bool:
    letters = [ch.lower() for ch in text if ch.isalnum()]
    return letters == letters[::-1]


examples = ["A man, a plan, a canal: Panama", "racecar", "hello", "No 'x' in Nixon"]
for s in examples:
    print(f"{s!r}: {is_palindrome(s)}")
""",
    ),
    (
        "Merge two sorted lists into one sorted list in linear time.",
        "python",
        r"""
def merge_sorted(a: list[int], b: list[int]) -> list[int]:
    result = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            result.append(a[i])
            i += 1
        else:
            result.append(b[j])
            j += 1
    result.extend(a[i:])
    result.extend(b[j:])
    return result


print(merge_sorted([1, 4, 9], [2, 3, 10, 12]))  # [1, 2, 3, 4, 9, 10, 12]
""",
    ),
    (
        "Write a Python decorator that retries a function with exponential backoff.",
        "python",
        r"""
import functools
import time


def retry(times=3, base_delay=0.5, exceptions=(Exception,)):
    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for attempt in range(times):
                try:
                    return func(*args, **kwargs)
                except exceptions:
                    if attempt == times - 1:
                        raise
                    time.sleep(base_delay * 2 ** attempt)
        return wrapper
    return decorator


@retry(times=4, exceptions=(ConnectionError,))
def fetch_report():
    ...
""",
    ),
    (
        "Create a context manager that measures how long a block of code takes.",
        "python",
        r"""
import time
from contextlib import contextmanager


@contextmanager
def timer(label: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        print(f"{label}: {elapsed * 1000:.1f} ms")


with timer("sum of squares"):
    total = sum(i * i for i in range(1_000_000))
""",
    ),
    (
        "Compute the number of days between two ISO-formatted dates in Python.",
        "python",
        r'''
from datetime import date


def days_between(start: str, end: str) -> int:
    """Return the number of days from start to end, e.g. '2024-01-01'."""
    d0 = date.fromisoformat(start)
    d1 = date.fromisoformat(end)
    return (d1 - d0).days


print(days_between("2024-02-01", "2024-03-01"))  # 29, because 2024 is a leap year
print(days_between("2023-12-25", "2023-12-01"))  # -24
''',
    ),
    (
        "Split an iterable into batches of a fixed size with a generator.",
        "python",
        r"""
from itertools import islice


def batched(iterable, size):
    if size < 1:
        raise ValueError("size must be at least 1")
    it = iter(iterable)
    while batch := list(islice(it, size)):
        yield batch


for chunk in batched(range(10), 4):
    print(chunk)
# [0, 1, 2, 3]
# [4, 5, 6, 7]
# [8, 9]
""",
    ),
    (
        "Write unittest tests for a function that converts Celsius to Fahrenheit.",
        "python",
        r"""
import unittest


def c_to_f(celsius: float) -> float:
    return celsius * 9 / 5 + 32


class TestCelsiusToFahrenheit(unittest.TestCase):
    def test_freezing_point(self):
        self.assertEqual(c_to_f(0), 32)

    def test_boiling_point(self):
        self.assertEqual(c_to_f(100), 212)

    def test_minus_forty_is_the_same(self):
        self.assertEqual(c_to_f(-40), -40)

    def test_fraction(self):
        self.assertAlmostEqual(c_to_f(37.5), 99.5)


if __name__ == "__main__":
    unittest.main()
""",
    ),
    (
        "Use pytest.mark.parametrize to test a slugify function.",
        "python",
        r"""
import re

import pytest


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower())
    return slug.strip("-")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Hello World", "hello-world"),
        ("  Leading and trailing  ", "leading-and-trailing"),
        ("C++ & Rust: a comparison!", "c-rust-a-comparison"),
        ("2024 Annual Report", "2024-annual-report"),
    ],
)
def test_slugify(title, expected):
    assert slugify(title) == expected
""",
    ),
    (
        "Load a JSON config file, fill in defaults, and give a helpful error if it is invalid.",
        "python",
        r"""
import json
from pathlib import Path

DEFAULTS = {"host": "127.0.0.1", "port": 8080, "debug": False}


def load_config(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        return dict(DEFAULTS)
    try:
        user = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from e
    if not isinstance(user, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    return {**DEFAULTS, **user}
""",
    ),
    (
        "Implement a least-recently-used cache with a fixed capacity using OrderedDict.",
        "python",
        r"""
from collections import OrderedDict


class LRUCache:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._data = OrderedDict()

    def get(self, key, default=None):
        if key not in self._data:
            return default
        self._data.move_to_end(key)
        return self._data[key]

    def put(self, key, value):
        if key in self._data:
            self._data.move_to_end(key)
        self._data[key] = value
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)


cache = LRUCache(2)
cache.put("a", 1)
cache.put("b", 2)
cache.get("a")
cache.put("c", 3)       # evicts "b", the least recently used
print(cache.get("b"))   # None
""",
    ),
    (
        "Write a small command-line tool with argparse that resizes numbers by a factor.",
        "python",
        r"""
import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description="Multiply numbers by a factor.")
    parser.add_argument("numbers", nargs="+", type=float, help="values to scale")
    parser.add_argument("-f", "--factor", type=float, default=2.0,
                        help="scale factor (default: 2)")
    parser.add_argument("--round", type=int, metavar="N",
                        help="round results to N decimal places")
    args = parser.parse_args()

    for value in args.numbers:
        result = value * args.factor
        if args.round is not None:
            result = round(result, args.round)
        print(result)


if __name__ == "__main__":
    main()
""",
    ),
    (
        "Transpose a matrix stored as a list of lists.",
        "python",
        r"""
def transpose(matrix):
    if not matrix:
        return []
    width = len(matrix[0])
    if any(len(row) != width for row in matrix):
        raise ValueError("all rows must have the same length")
    return [list(col) for col in zip(*matrix)]


m = [[1, 2, 3],
     [4, 5, 6]]
print(transpose(m))  # [[1, 4], [2, 5], [3, 6]]
""",
    ),
    (
        "Find all prime numbers below a limit with the Sieve of Eratosthenes.",
        "python",
        r"""
def primes_below(limit: int) -> list[int]:
    if limit < 3:
        return []
    is_prime = [True] * limit
    is_prime[0] = is_prime[1] = False
    for n in range(2, int(limit ** 0.5) + 1):
        if is_prime[n]:
            for multiple in range(n * n, limit, n):
                is_prime[multiple] = False
    return [n for n, prime in enumerate(is_prime) if prime]


print(primes_below(50))
# [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]
""",
    ),
    (
        "Compute the greatest common divisor and least common multiple of a list of integers.",
        "python",
        r"""
from functools import reduce


def gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return abs(a)


def lcm(a: int, b: int) -> int:
    return abs(a * b) // gcd(a, b) if a and b else 0


numbers = [12, 18, 30]
print(reduce(gcd, numbers))  # 6
print(reduce(lcm, numbers))  # 180
""",
    ),
    (
        "Convert integers to Roman numerals and back.",
        "python",
        r"""
NUMERALS = [
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
    (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
]


def to_roman(n: int) -> str:
    if not 0 < n < 4000:
        raise ValueError("Roman numerals cover 1 to 3999")
    parts = []
    for value, symbol in NUMERALS:
        count, n = divmod(n, value)
        parts.append(symbol * count)
    return "".join(parts)


def from_roman(s: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for ch, nxt in zip(s, s[1:] + " "):
        v = values[ch]
        total += -v if nxt != " " and values[nxt] > v else v
    return total


assert to_roman(1994) == "MCMXCIV"
assert from_roman("MCMXCIV") == 1994
""",
    ),
    (
        "Encrypt and decrypt text with a Caesar cipher, leaving non-letters unchanged.",
        "python",
        r"""
import string


def caesar(text: str, shift: int) -> str:
    lower = string.ascii_lowercase
    upper = string.ascii_uppercase
    shift %= 26
    table = str.maketrans(
        lower + upper,
        lower[shift:] + lower[:shift] + upper[shift:] + upper[:shift],
    )
    return text.translate(table)


secret = caesar("Meet me at the old bridge.", 3)
print(secret)              # Phhw ph dw wkh rog eulgjh.
print(caesar(secret, -3))  # Meet me at the old bridge.
""",
    ),
    (
        "Implement run-length encoding and decoding for strings.",
        "python",
        r"""
from itertools import groupby


def rle_encode(s: str) -> list[tuple[str, int]]:
    return [(ch, len(list(group))) for ch, group in groupby(s)]


def rle_decode(pairs: list[tuple[str, int]]) -> str:
    return "".join(ch * count for ch, count in pairs)


encoded = rle_encode("aaabccddddd")
print(encoded)  # [('a', 3), ('b', 1), ('c', 2), ('d', 5)]
assert rle_decode(encoded) == "aaabccddddd"
""",
    ),
    (
        "Group a list of words into anagram families.",
        "python",
        r"""
from collections import defaultdict


def group_anagrams(words: list[str]) -> list[list[str]]:
    groups = defaultdict(list)
    for word in words:
        key = "".join(sorted(word.lower()))
        groups[key].append(word)
    return [sorted(g) for g in groups.values() if len(g) > 1]


words = ["listen", "silent", "enlist", "google", "tinsel", "banana", "inlets"]
print(group_anagrams(words))
# [['enlist', 'inlets', 'listen', 'silent', 'tinsel']]
""",
    ),
    (
        "Solve the two-sum problem in one pass with a dictionary.",
        "python",
        r'''
def two_sum(nums: list[int], target: int) -> tuple[int, int] | None:
    """Return indices (i, j) with nums[i] + nums[j] == target, or None."""
    seen = {}
    for j, value in enumerate(nums):
        i = seen.get(target - value)
        if i is not None:
            return i, j
        seen[value] = j
    return None


print(two_sum([2, 7, 11, 15], 9))   # (0, 1)
print(two_sum([3, 2, 4], 6))        # (1, 2)
print(two_sum([1, 2], 10))          # None
''',
    ),
    (
        "Sum the sizes of all files under a directory, grouped by file extension.",
        "python",
        r"""
from collections import Counter
from pathlib import Path


def size_by_extension(root: str) -> Counter:
    sizes = Counter()
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink():
            sizes[path.suffix.lower() or "(none)"] += path.stat().st_size
    return sizes


for ext, total in size_by_extension(".").most_common(10):
    print(f"{ext:>10}  {total / 1_048_576:8.2f} MiB")
""",
    ),
    (
        "Configure Python logging to write to both the console and a rotating log file.",
        "python",
        r"""
import logging
from logging.handlers import RotatingFileHandler


def setup_logging(path: str = "app.log", level: int = logging.INFO) -> logging.Logger:
    fmt = logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s")

    console = logging.StreamHandler()
    console.setFormatter(fmt)

    file_handler = RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3)
    file_handler.setFormatter(fmt)

    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(console)
    root.addHandler(file_handler)
    return logging.getLogger("app")


log = setup_logging()
log.info("service started on port %d", 8080)
""",
    ),
    (
        "Download several URLs concurrently with a thread pool and report their sizes.",
        "python",
        r"""
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.request import urlopen

URLS = [
    "https://example.com/",
    "https://example.org/",
    "https://example.net/",
]


def fetch(url: str, timeout: float = 10.0) -> int:
    with urlopen(url, timeout=timeout) as response:
        return len(response.read())


with ThreadPoolExecutor(max_workers=4) as pool:
    futures = {pool.submit(fetch, url): url for url in URLS}
    for future in as_completed(futures):
        url = futures[future]
        try:
            print(f"{url}: {future.result()} bytes")
        except OSError as exc:
            print(f"{url}: failed ({exc})")
""",
    ),
]

CODE += [
    (
        "Run several coroutines concurrently with asyncio.gather and a timeout.",
        "python",
        r"""
import asyncio
import random


async def check_sensor(name: str) -> tuple[str, float]:
    await asyncio.sleep(random.uniform(0.1, 0.5))  # simulate slow I/O
    return name, round(random.uniform(18.0, 24.0), 1)


async def main() -> None:
    names = ["kitchen", "bedroom", "garage", "attic"]
    try:
        readings = await asyncio.wait_for(
            asyncio.gather(*(check_sensor(n) for n in names)), timeout=2.0
        )
    except asyncio.TimeoutError:
        print("sensors did not answer in time")
        return
    for name, temp in readings:
        print(f"{name:>8}: {temp} C")


asyncio.run(main())
""",
    ),
    (
        "Define an Enum for order status with a method that says which transitions are allowed.",
        "python",
        r"""
from enum import Enum


class OrderStatus(Enum):
    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"

    def can_move_to(self, new: "OrderStatus") -> bool:
        allowed = {
            OrderStatus.PENDING: {OrderStatus.PAID, OrderStatus.CANCELLED},
            OrderStatus.PAID: {OrderStatus.SHIPPED, OrderStatus.CANCELLED},
            OrderStatus.SHIPPED: {OrderStatus.DELIVERED},
        }
        return new in allowed.get(self, set())


print(OrderStatus.PAID.can_move_to(OrderStatus.SHIPPED))       # True
print(OrderStatus.DELIVERED.can_move_to(OrderStatus.PENDING))  # False
""",
    ),
    (
        "Write a Temperature class whose setter rejects values below absolute zero.",
        "python",
        r"""
class Temperature:
    ABSOLUTE_ZERO = -273.15

    def __init__(self, celsius: float = 0.0):
        self.celsius = celsius

    @property
    def celsius(self) -> float:
        return self._celsius

    @celsius.setter
    def celsius(self, value: float) -> None:
        if value < self.ABSOLUTE_ZERO:
            raise ValueError(f"{value} C is below absolute zero")
        self._celsius = float(value)

    @property
    def fahrenheit(self) -> float:
        return self._celsius * 9 / 5 + 32


t = Temperature(21.5)
print(t.fahrenheit)  # 70.7
""",
    ),
    (
        "Represent money safely with Decimal, including equality and a readable repr.",
        "python",
        r"""
from decimal import ROUND_HALF_UP, Decimal


class Money:
    def __init__(self, amount, currency: str = "EUR"):
        self.amount = Decimal(str(amount)).quantize(Decimal("0.01"), ROUND_HALF_UP)
        self.currency = currency

    def __add__(self, other: "Money") -> "Money":
        if self.currency != other.currency:
            raise ValueError("cannot add different currencies")
        return Money(self.amount + other.amount, self.currency)

    def __eq__(self, other):
        if not isinstance(other, Money):
            return NotImplemented
        return (self.amount, self.currency) == (other.amount, other.currency)

    def __repr__(self):
        return f"Money('{self.amount}', '{self.currency}')"


print(Money(0.1) + Money(0.2) == Money("0.30"))  # True, unlike floats
""",
    ),
    (
        "Model a bank account that raises a custom exception on overdraft.",
        "python",
        r"""
class InsufficientFundsError(Exception):
    def __init__(self, balance: float, requested: float):
        super().__init__(f"cannot withdraw {requested:.2f}; balance is {balance:.2f}")
        self.balance = balance
        self.requested = requested


class BankAccount:
    def __init__(self, owner: str, balance: float = 0.0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount: float) -> None:
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self.balance += amount

    def withdraw(self, amount: float) -> None:
        if amount > self.balance:
            raise InsufficientFundsError(self.balance, amount)
        self.balance -= amount


acct = BankAccount("Dana", 50)
try:
    acct.withdraw(80)
except InsufficientFundsError as err:
    print(err)
""",
    ),
    (
        "Implement a singly linked list with append, iteration and in-place reversal.",
        "python",
        r"""
class Node:
    def __init__(self, value, next=None):
        self.value = value
        self.next = next


class LinkedList:
    def __init__(self, values=()):
        self.head = None
        for v in values:
            self.append(v)

    def append(self, value):
        node = Node(value)
        if self.head is None:
            self.head = node
            return
        cur = self.head
        while cur.next:
            cur = cur.next
        cur.next = node

    def __iter__(self):
        cur = self.head
        while cur:
            yield cur.value
            cur = cur.next

    def reverse(self):
        prev, cur = None, self.head
        while cur:
            cur.next, prev, cur = prev, cur, cur.next
        self.head = prev


ll = LinkedList([1, 2, 3])
ll.reverse()
print(list(ll))  # [3, 2, 1]
""",
    ),
    (
        "Find the shortest path length in a grid maze with breadth-first search.",
        "python",
        r'''
from collections import deque


def shortest_path(grid: list[str], start: tuple[int, int], goal: tuple[int, int]) -> int:
    """Grid cells are '.' (open) or '#' (wall). Return steps, or -1 if unreachable."""
    rows, cols = len(grid), len(grid[0])
    queue = deque([(start, 0)])
    seen = {start}
    while queue:
        (r, c), dist = queue.popleft()
        if (r, c) == goal:
            return dist
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < rows and 0 <= nc < cols and grid[nr][nc] == "." \
                    and (nr, nc) not in seen:
                seen.add((nr, nc))
                queue.append(((nr, nc), dist + 1))
    return -1


maze = ["..#.",
        ".##.",
        "...."]
print(shortest_path(maze, (0, 0), (0, 3)))  # 7
''',
    ),
    (
        "Compute shortest distances from a source node with Dijkstra's algorithm and heapq.",
        "python",
        r"""
import heapq


def dijkstra(graph: dict[str, dict[str, int]], source: str) -> dict[str, int]:
    dist = {source: 0}
    heap = [(0, source)]
    while heap:
        d, node = heapq.heappop(heap)
        if d > dist.get(node, float("inf")):
            continue  # stale entry
        for neighbor, weight in graph.get(node, {}).items():
            nd = d + weight
            if nd < dist.get(neighbor, float("inf")):
                dist[neighbor] = nd
                heapq.heappush(heap, (nd, neighbor))
    return dist


roads = {
    "A": {"B": 4, "C": 1},
    "C": {"B": 2, "D": 7},
    "B": {"D": 1},
}
print(dijkstra(roads, "A"))  # {'A': 0, 'B': 3, 'C': 1, 'D': 4}
""",
    ),
    (
        "Order tasks so that every task comes after its dependencies (topological sort).",
        "python",
        r'''
from collections import deque


def topo_sort(deps: dict[str, list[str]]) -> list[str]:
    """deps maps a task to the tasks it depends on."""
    nodes = set(deps) | {d for ds in deps.values() for d in ds}
    indegree = {n: 0 for n in nodes}
    users = {n: [] for n in nodes}
    for task, requirements in deps.items():
        for req in requirements:
            indegree[task] += 1
            users[req].append(task)
    ready = deque(sorted(n for n in nodes if indegree[n] == 0))
    order = []
    while ready:
        n = ready.popleft()
        order.append(n)
        for user in sorted(users[n]):
            indegree[user] -= 1
            if indegree[user] == 0:
                ready.append(user)
    if len(order) != len(nodes):
        raise ValueError("dependency cycle detected")
    return order


print(topo_sort({"deploy": ["test", "build"], "test": ["build"], "build": ["fetch"]}))
# ['fetch', 'build', 'test', 'deploy']
''',
    ),
    (
        "Build a trie that supports inserting words and searching by prefix.",
        "python",
        r"""
class Trie:
    def __init__(self):
        self.children = {}
        self.is_word = False

    def insert(self, word: str) -> None:
        node = self
        for ch in word:
            node = node.children.setdefault(ch, Trie())
        node.is_word = True

    def words_with_prefix(self, prefix: str) -> list[str]:
        node = self
        for ch in prefix:
            if ch not in node.children:
                return []
            node = node.children[ch]
        results = []
        stack = [(node, prefix)]
        while stack:
            current, text = stack.pop()
            if current.is_word:
                results.append(text)
            for ch, child in current.children.items():
                stack.append((child, text + ch))
        return sorted(results)


t = Trie()
for w in ["car", "card", "care", "cat", "dog"]:
    t.insert(w)
print(t.words_with_prefix("car"))  # ['car', 'card', 'care']
""",
    ),
    (
        "Invert a dictionary, collecting keys that share the same value.",
        "python",
        r"""
from collections import defaultdict

favorite_color = {
    "ana": "green",
    "bo": "blue",
    "cy": "green",
    "di": "red",
    "ed": "blue",
}

by_color = defaultdict(list)
for person, color in favorite_color.items():
    by_color[color].append(person)

print(dict(by_color))
# {'green': ['ana', 'cy'], 'blue': ['bo', 'ed'], 'red': ['di']}

# When values are unique, a comprehension is enough:
codes = {"FR": "France", "JP": "Japan"}
names = {name: code for code, name in codes.items()}
""",
    ),
    (
        "Use set operations to find mutual friends and friend suggestions.",
        "python",
        r"""
friends = {
    "amy": {"bob", "cat", "dan"},
    "bob": {"amy", "cat", "eve"},
    "cat": {"amy", "bob", "dan", "eve"},
    "dan": {"amy", "cat"},
    "eve": {"bob", "cat"},
}


def mutual(a: str, b: str) -> set[str]:
    return friends[a] & friends[b]


def suggestions(person: str) -> set[str]:
    friends_of_friends = set().union(*(friends[f] for f in friends[person]))
    return friends_of_friends - friends[person] - {person}


print(mutual("amy", "eve"))   # {'bob', 'cat'} (in some order)
print(suggestions("dan"))     # {'bob', 'eve'}
""",
    ),
    (
        "Sort a list of employee records by department, then by salary descending.",
        "python",
        r"""
employees = [
    {"name": "Ravi", "dept": "Sales", "salary": 52000},
    {"name": "Lena", "dept": "Engineering", "salary": 91000},
    {"name": "Tom", "dept": "Sales", "salary": 61000},
    {"name": "Ines", "dept": "Engineering", "salary": 87000},
    {"name": "Kai", "dept": "Support", "salary": 45000},
]

ordered = sorted(employees, key=lambda e: (e["dept"], -e["salary"]))
for e in ordered:
    print(f'{e["dept"]:<12} {e["name"]:<6} {e["salary"]:>7,}')
""",
    ),
    (
        "Keep a moving average over the last N values with a deque.",
        "python",
        r"""
from collections import deque


class MovingAverage:
    def __init__(self, window: int):
        self.values = deque(maxlen=window)
        self.total = 0.0

    def add(self, x: float) -> float:
        if len(self.values) == self.values.maxlen:
            self.total -= self.values[0]
        self.values.append(x)
        self.total += x
        return self.total / len(self.values)


ma = MovingAverage(3)
print([round(ma.add(x), 2) for x in [10, 20, 30, 40, 50]])
# [10.0, 15.0, 20.0, 30.0, 40.0]
""",
    ),
    (
        "Implement a token-bucket rate limiter.",
        "python",
        r"""
import time


class TokenBucket:
    def __init__(self, rate: float, capacity: int):
        self.rate = rate            # tokens added per second
        self.capacity = capacity
        self.tokens = float(capacity)
        self.updated = time.monotonic()

    def allow(self, cost: float = 1.0) -> bool:
        now = time.monotonic()
        elapsed = now - self.updated
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


bucket = TokenBucket(rate=5, capacity=10)
accepted = sum(bucket.allow() for _ in range(25))
print(f"{accepted} of 25 requests accepted immediately")
""",
    ),
    (
        "Create an SQLite table from Python, insert rows safely with parameters, and query them.",
        "python",
        r"""
import sqlite3

with sqlite3.connect(":memory:") as conn:
    conn.execute(
        "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, year INTEGER)"
    )
    rows = [("Dune", 1965), ("Neuromancer", 1984), ("Hyperion", 1989)]
    conn.executemany("INSERT INTO books (title, year) VALUES (?, ?)", rows)

    cursor = conn.execute(
        "SELECT title, year FROM books WHERE year >= ? ORDER BY year", (1980,)
    )
    for title, year in cursor:
        print(f"{year}  {title}")
""",
    ),
    (
        "Stream a large log file and yield only error lines, without loading it into memory.",
        "python",
        r"""
from collections.abc import Iterator


def error_lines(path: str, keyword: str = "ERROR") -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if keyword in line:
                yield lineno, line.rstrip("\n")


count = 0
for lineno, line in error_lines("server.log"):
    count += 1
    if count <= 5:
        print(f"{lineno}: {line}")
print(f"{count} error lines in total")
""",
    ),
    (
        "Group consecutive log entries by date with itertools.groupby.",
        "python",
        r"""
from itertools import groupby

entries = [
    ("2024-05-01", "login"),
    ("2024-05-01", "upload"),
    ("2024-05-02", "login"),
    ("2024-05-03", "logout"),
    ("2024-05-03", "login"),
    ("2024-05-03", "upload"),
]

for day, group in groupby(entries, key=lambda e: e[0]):
    actions = [action for _, action in group]
    print(f"{day}: {len(actions)} events ({', '.join(actions)})")
""",
    ),
    (
        "Print a list of rows as an aligned plain-text table.",
        "python",
        r"""
def print_table(headers: list[str], rows: list[list[object]]) -> None:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "+".join("-" * (w + 2) for w in widths)
    for i, row in enumerate(cells):
        print(" " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if i == 0:
            print(line)


print_table(
    ["City", "Country", "Population"],
    [["Lagos", "Nigeria", 15_388_000], ["Lima", "Peru", 10_883_000], ["Oslo", "Norway", 709_000]],
)
""",
    ),
    (
        "Convert between snake_case and camelCase identifiers.",
        "python",
        r"""
import re


def snake_to_camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def camel_to_snake(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


print(snake_to_camel("max_retry_count"))   # maxRetryCount
print(camel_to_snake("maxRetryCount"))     # max_retry_count
print(camel_to_snake("HTTPServerError"))   # http_server_error
""",
    ),
    (
        "Use a NamedTuple to return several values from a function clearly.",
        "python",
        r"""
import statistics
from typing import NamedTuple


class Summary(NamedTuple):
    count: int
    mean: float
    median: float
    stdev: float


def summarize(values: list[float]) -> Summary:
    if len(values) < 2:
        raise ValueError("need at least two values")
    return Summary(
        count=len(values),
        mean=statistics.fmean(values),
        median=statistics.median(values),
        stdev=statistics.stdev(values),
    )


s = summarize([2.5, 3.1, 4.8, 3.9, 2.2])
print(f"n={s.count} mean={s.mean:.2f} median={s.median} sd={s.stdev:.2f}")
""",
    ),
    (
        "Define a Protocol so that any object with an area() method can be passed to a function.",
        "python",
        r"""
import math
from dataclasses import dataclass
from typing import Protocol


class HasArea(Protocol):
    def area(self) -> float: ...


@dataclass
class Circle:
    radius: float

    def area(self) -> float:
        return math.pi * self.radius ** 2


@dataclass
class Rectangle:
    width: float
    height: float

    def area(self) -> float:
        return self.width * self.height


def total_area(shapes: list[HasArea]) -> float:
    return sum(s.area() for s in shapes)


print(round(total_area([Circle(1), Rectangle(2, 3)]), 3))  # 9.142
""",
    ),
    (
        "Generate a random password that contains letters, digits and symbols, using secrets.",
        "python",
        r"""
import secrets
import string


def make_password(length: int = 16) -> str:
    if length < 8:
        raise ValueError("use at least 8 characters")
    pools = [string.ascii_lowercase, string.ascii_uppercase, string.digits, "!@#$%^&*-_"]
    alphabet = "".join(pools)
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(ch in pool for ch in password) for pool in pools):
            return password


print(make_password())
""",
    ),
    (
        "Compute the SHA-256 hash of a large file in chunks.",
        "python",
        r"""
import hashlib
import sys


def sha256_file(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{sha256_file(name)}  {name}")
""",
    ),
    (
        "Find the date of the next given weekday after a date.",
        "python",
        r'''
from datetime import date, timedelta

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def next_weekday(start: date, weekday: str) -> date:
    """Return the first date strictly after start that falls on weekday."""
    target = WEEKDAYS.index(weekday.lower())
    days_ahead = (target - start.weekday() - 1) % 7 + 1
    return start + timedelta(days=days_ahead)


today = date(2024, 3, 14)                 # a Thursday
print(next_weekday(today, "Friday"))      # 2024-03-15
print(next_weekday(today, "thursday"))    # 2024-03-21
''',
    ),
    (
        "Rename all .jpeg files in a folder to .jpg, skipping names that already exist.",
        "python",
        r"""
from pathlib import Path


def normalize_extensions(folder: str) -> int:
    renamed = 0
    for path in sorted(Path(folder).glob("*.jpeg")):
        target = path.with_suffix(".jpg")
        if target.exists():
            print(f"skip {path.name}: {target.name} already exists")
            continue
        path.rename(target)
        renamed += 1
    return renamed


print(f"renamed {normalize_extensions('photos')} files")
""",
    ),
    (
        "Run a git command from Python and capture its output, handling failure.",
        "python",
        r"""
import subprocess


def current_branch(repo: str = ".") -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return result.stdout.strip()


print(current_branch() or "not a git repository")
""",
    ),
    (
        "Model a traffic light as a simple state machine.",
        "python",
        r"""
import itertools
import time

TRANSITIONS = {"green": "yellow", "yellow": "red", "red": "green"}
DURATIONS = {"green": 3.0, "yellow": 1.0, "red": 2.0}


def run(start: str = "red", cycles: int = 6, speed: float = 0.1) -> None:
    state = start
    for _ in itertools.repeat(None, cycles):
        print(f"light is {state.upper()} for {DURATIONS[state]:.0f}s")
        time.sleep(DURATIONS[state] * speed)
        state = TRANSITIONS[state]


run()
""",
    ),
    (
        "Multiply two matrices in pure Python, checking that the shapes are compatible.",
        "python",
        r"""
def matmul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    if not a or not b or len(a[0]) != len(b):
        raise ValueError("incompatible shapes")
    cols = list(zip(*b))
    return [[sum(x * y for x, y in zip(row, col)) for col in cols] for row in a]


a = [[1, 2],
     [3, 4]]
b = [[5, 6, 7],
     [8, 9, 10]]
print(matmul(a, b))  # [[21, 24, 27], [47, 54, 61]]
""",
    ),
]

CODE += [
    (
        "Solve the 0/1 knapsack problem with dynamic programming.",
        "python",
        r'''
def knapsack(items: list[tuple[int, int]], capacity: int) -> int:
    """items are (weight, value) pairs; return the best total value."""
    best = [0] * (capacity + 1)
    for weight, value in items:
        for c in range(capacity, weight - 1, -1):
            best[c] = max(best[c], best[c - weight] + value)
    return best[capacity]


items = [(1, 1), (3, 4), (4, 5), (5, 7)]
print(knapsack(items, 7))  # 9: take the items of weight 3 and 4
''',
    ),
    (
        "Compute the Levenshtein edit distance between two strings.",
        "python",
        r"""
def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(
                prev[j] + 1,               # deletion
                cur[j - 1] + 1,            # insertion
                prev[j - 1] + (ca != cb),  # substitution
            ))
        prev = cur
    return prev[-1]


print(edit_distance("kitten", "sitting"))  # 3
print(edit_distance("flaw", "lawn"))       # 2
""",
    ),
    (
        "Find the longest common prefix of a list of strings.",
        "python",
        r"""
import os


def common_prefix(words: list[str]) -> str:
    if not words:
        return ""
    shortest = min(words, key=len)
    for i, ch in enumerate(shortest):
        if any(w[i] != ch for w in words):
            return shortest[:i]
    return shortest


print(common_prefix(["interview", "internet", "interval"]))  # inter
print(repr(common_prefix(["dog", "cat"])))                   # ''
# The standard library has a character-wise version too:
print(os.path.commonprefix(["/usr/lib", "/usr/local"]))     # /usr/l
""",
    ),
    (
        "Check whether brackets in an expression are balanced.",
        "python",
        r"""
PAIRS = {")": "(", "]": "[", "}": "{"}


def balanced(expr: str) -> bool:
    stack = []
    for ch in expr:
        if ch in "([{":
            stack.append(ch)
        elif ch in PAIRS:
            if not stack or stack.pop() != PAIRS[ch]:
                return False
    return not stack


for s in ["(a[1] + b) * {c}", "([)]", "((", "f(x) = [y]"]:
    print(f"{s!r:22} -> {balanced(s)}")
""",
    ),
    (
        "Implement quicksort in Python (not in place, for clarity).",
        "python",
        r"""
import random


def quicksort(items: list) -> list:
    if len(items) <= 1:
        return items
    pivot = random.choice(items)
    smaller = [x for x in items if x < pivot]
    equal = [x for x in items if x == pivot]
    larger = [x for x in items if x > pivot]
    return quicksort(smaller) + equal + quicksort(larger)


data = [33, 4, 15, 8, 42, 16, 23, 4]
print(quicksort(data))  # [4, 4, 8, 15, 16, 23, 33, 42]
""",
    ),
    (
        "Implement merge sort recursively.",
        "python",
        r"""
def merge_sort(items: list) -> list:
    if len(items) <= 1:
        return list(items)
    mid = len(items) // 2
    left, right = merge_sort(items[:mid]), merge_sort(items[mid:])
    merged, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    return merged + left[i:] + right[j:]


print(merge_sort(["pear", "apple", "fig", "banana", "cherry"]))
""",
    ),
    (
        "Get the top three highest-scoring players with heapq.nlargest.",
        "python",
        r"""
import heapq

scores = {
    "ana": 1820,
    "ben": 2110,
    "chen": 1975,
    "dara": 2240,
    "eli": 1650,
    "femi": 2050,
}

top3 = heapq.nlargest(3, scores.items(), key=lambda kv: kv[1])
for rank, (player, score) in enumerate(top3, start=1):
    print(f"{rank}. {player:<5} {score}")
# 1. dara  2240
# 2. ben   2110
# 3. femi  2050
""",
    ),
    (
        "Use an abstract base class to define shapes that must implement area and perimeter.",
        "python",
        r"""
import math
from abc import ABC, abstractmethod


class Shape(ABC):
    @abstractmethod
    def area(self) -> float: ...

    @abstractmethod
    def perimeter(self) -> float: ...

    def describe(self) -> str:
        return f"{type(self).__name__}: area={self.area():.2f}, perimeter={self.perimeter():.2f}"


class Square(Shape):
    def __init__(self, side: float):
        self.side = side

    def area(self) -> float:
        return self.side ** 2

    def perimeter(self) -> float:
        return 4 * self.side


class Circle(Shape):
    def __init__(self, r: float):
        self.r = r

    def area(self) -> float:
        return math.pi * self.r ** 2

    def perimeter(self) -> float:
        return 2 * math.pi * self.r


for shape in (Square(2), Circle(1.5)):
    print(shape.describe())
""",
    ),
    (
        "Write a class that can be iterated over to produce a countdown.",
        "python",
        r"""
class Countdown:
    def __init__(self, start: int):
        self.start = start

    def __iter__(self):
        return CountdownIterator(self.start)


class CountdownIterator:
    def __init__(self, current: int):
        self.current = current

    def __iter__(self):
        return self

    def __next__(self) -> int:
        if self.current < 0:
            raise StopIteration
        value = self.current
        self.current -= 1
        return value


print(list(Countdown(5)))  # [5, 4, 3, 2, 1, 0]
""",
    ),
    (
        "Make a dataclass that can be sorted by version number.",
        "python",
        r"""
from dataclasses import dataclass, field


@dataclass(order=True, frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    label: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> "Version":
        core, _, label = text.partition("-")
        major, minor, patch = (int(p) for p in core.split("."))
        return cls(major, minor, patch, label)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{self.label}" if self.label else base


versions = [Version.parse(v) for v in ["1.10.0", "1.2.3", "1.9.12-beta", "0.9.0"]]
print([str(v) for v in sorted(versions)])
# ['0.9.0', '1.2.3', '1.9.12-beta', '1.10.0']
""",
    ),
    (
        "Keep a to-do list in a JSON file with functions to add and complete items.",
        "python",
        r"""
import json
from pathlib import Path

TODO_FILE = Path("todo.json")


def load() -> list[dict]:
    if TODO_FILE.exists():
        return json.loads(TODO_FILE.read_text())
    return []


def save(items: list[dict]) -> None:
    TODO_FILE.write_text(json.dumps(items, indent=2))


def add(text: str) -> None:
    items = load()
    items.append({"text": text, "done": False})
    save(items)


def complete(index: int) -> None:
    items = load()
    items[index]["done"] = True
    save(items)


add("water the plants")
add("call the dentist")
complete(0)
for i, item in enumerate(load()):
    print(f"[{'x' if item['done'] else ' '}] {i}: {item['text']}")
""",
    ),
    (
        "Serve a tiny JSON health-check endpoint with the standard library's http.server.",
        "python",
        r"""
import json
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/health":
            self.send_error(404, "not found")
            return
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", 8000), Handler).serve_forever()
""",
    ),
    (
        "Build a small Flask API with routes to list and create notes.",
        "python",
        r"""
from flask import Flask, abort, jsonify, request

app = Flask(__name__)
notes: list[dict] = []


@app.get("/notes")
def list_notes():
    return jsonify(notes)


@app.post("/notes")
def create_note():
    data = request.get_json(silent=True) or {}
    text = data.get("text", "").strip()
    if not text:
        abort(400, description="'text' is required")
    note = {"id": len(notes) + 1, "text": text}
    notes.append(note)
    return jsonify(note), 201


if __name__ == "__main__":
    app.run(debug=True)
""",
    ),
    (
        "Extract all dates in YYYY-MM-DD format from a block of text with a regular expression.",
        "python",
        r"""
import re
from datetime import date

DATE_RE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def find_dates(text: str) -> list[date]:
    found = []
    for y, m, d in DATE_RE.findall(text):
        try:
            found.append(date(int(y), int(m), int(d)))
        except ValueError:
            pass  # looks like a date but is not one, e.g. 2023-02-30
    return found


notes = "Kickoff on 2024-01-15, review 2024-02-30 (typo), launch 2024-03-01."
print(find_dates(notes))
# [datetime.date(2024, 1, 15), datetime.date(2024, 3, 1)]
""",
    ),
    (
        "Fill in an email template with string.Template.",
        "python",
        r"""
from string import Template

REMINDER = Template(
    "Hi $name,\n\n"
    "This is a reminder that your appointment is on $day at $time.\n"
    "If you need to reschedule, reply to this email or call $phone.\n\n"
    "See you soon,\n$clinic"
)

message = REMINDER.substitute(
    name="Ms. Haddad",
    day="Tuesday 9 July",
    time="10:30",
    phone="555-0142",
    clinic="Riverside Dental",
)
print(message)
""",
    ),
    (
        "Convert a non-negative integer to its binary representation without using bin().",
        "python",
        r"""
def to_binary(n: int) -> str:
    if n < 0:
        raise ValueError("only non-negative integers are supported")
    if n == 0:
        return "0"
    digits = []
    while n:
        n, bit = divmod(n, 2)
        digits.append(str(bit))
    return "".join(reversed(digits))


for n in [0, 5, 10, 255]:
    assert to_binary(n) == format(n, "b")
    print(n, to_binary(n))
""",
    ),
    (
        "Print a text histogram of how often each dice total appears in simulated rolls.",
        "python",
        r"""
import random
from collections import Counter

random.seed(7)
rolls = Counter(random.randint(1, 6) + random.randint(1, 6) for _ in range(1000))

biggest = max(rolls.values())
for total in range(2, 13):
    count = rolls[total]
    bar = "#" * round(40 * count / biggest)
    print(f"{total:>2} | {bar:<40} {count}")
""",
    ),
    (
        "Test a function that calls a web API by mocking the network call.",
        "python",
        r"""
import json
import unittest
from unittest.mock import MagicMock, patch
from urllib.request import urlopen


def get_temperature(city: str) -> float:
    with urlopen(f"https://weather.example.com/api?city={city}") as resp:
        return json.load(resp)["temp_c"]


class TestGetTemperature(unittest.TestCase):
    @patch(f"{__name__}.urlopen")
    def test_parses_temperature(self, mock_urlopen):
        fake = MagicMock()
        fake.read.return_value = b'{"temp_c": 17.5}'
        mock_urlopen.return_value.__enter__.return_value = fake
        self.assertEqual(get_temperature("Oslo"), 17.5)
        mock_urlopen.assert_called_once()


if __name__ == "__main__":
    unittest.main()
""",
    ),
    (
        "Write a list of dictionaries to a CSV file with a header row.",
        "python",
        r"""
import csv

orders = [
    {"id": 1001, "customer": "Koh", "total": 42.50, "paid": True},
    {"id": 1002, "customer": "Novak", "total": 18.00, "paid": False},
    {"id": 1003, "customer": "Adebayo", "total": 97.25, "paid": True},
]

with open("orders.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=["id", "customer", "total", "paid"])
    writer.writeheader()
    writer.writerows(orders)
""",
    ),
    (
        "Design a small exception hierarchy for a payment module and handle errors by type.",
        "python",
        r'''
class PaymentError(Exception):
    """Base class for all payment problems."""


class CardDeclined(PaymentError):
    pass


class GatewayTimeout(PaymentError):
    retryable = True


def charge(amount_cents: int) -> str:
    if amount_cents > 50_000:
        raise CardDeclined("limit exceeded")
    return "txn_001"


try:
    charge(75_000)
except GatewayTimeout:
    print("try again later")
except CardDeclined as e:
    print(f"declined: {e}")
except PaymentError as e:
    print(f"payment failed: {e}")
''',
    ),
    (
        "Parse simple text commands with a match statement.",
        "python",
        r"""
def handle(command: str) -> str:
    match command.split():
        case ["go", ("north" | "south" | "east" | "west") as direction]:
            return f"You walk {direction}."
        case ["take", item]:
            return f"You pick up the {item}."
        case ["drop", *items] if items:
            return f"You drop {', '.join(items)}."
        case ["look"] | ["l"]:
            return "You are in a small, dusty room."
        case ["quit"]:
            return "Goodbye."
        case _:
            return f"I don't understand {command!r}."


for cmd in ["go north", "take lamp", "drop key coin", "l", "dance"]:
    print(handle(cmd))
""",
    ),
    (
        "Annotate a function that takes a structured dictionary using TypedDict.",
        "python",
        r"""
from typing import TypedDict


class Address(TypedDict):
    street: str
    city: str
    postcode: str


class Customer(TypedDict, total=False):
    name: str
    email: str
    address: Address


def mailing_label(c: Customer) -> str:
    addr = c.get("address")
    if addr is None:
        return c.get("name", "Unknown")
    return f"{c.get('name', '')}\n{addr['street']}\n{addr['postcode']} {addr['city']}"


print(mailing_label({
    "name": "R. Silva",
    "address": {"street": "12 Quay Lane", "city": "Bristol", "postcode": "BS1 4DJ"},
}))
""",
    ),
    (
        "Open a variable number of files safely with contextlib.ExitStack.",
        "python",
        r'''
from contextlib import ExitStack


def merge_files(paths: list[str], out_path: str) -> None:
    """Interleave lines from several files into one output file."""
    with ExitStack() as stack:
        files = [stack.enter_context(open(p, encoding="utf-8")) for p in paths]
        out = stack.enter_context(open(out_path, "w", encoding="utf-8"))
        while files:
            for f in list(files):
                line = f.readline()
                if line:
                    out.write(line)
                else:
                    files.remove(f)


merge_files(["a.txt", "b.txt", "c.txt"], "merged.txt")
''',
    ),
    (
        "Map exam scores to letter grades with bisect.",
        "python",
        r"""
from bisect import bisect


def grade(score: float, breakpoints=(60, 70, 80, 90), grades="FDCBA") -> str:
    return grades[bisect(breakpoints, score)]


scores = [33, 99, 77, 70, 89, 90, 100, 59.5]
print([grade(s) for s in scores])
# ['F', 'A', 'C', 'C', 'B', 'A', 'A', 'F']
""",
    ),
    (
        "Normalize each row of a NumPy array to unit length, avoiding division by zero.",
        "python",
        r"""
import numpy as np


def normalize_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


x = np.array([[3.0, 4.0],
              [0.0, 0.0],
              [1.0, 1.0]])
print(normalize_rows(x))
# [[0.6        0.8       ]
#  [0.         0.        ]
#  [0.70710678 0.70710678]]
""",
    ),
    (
        "Summarize sales by month and product with pandas.",
        "python",
        r"""
import pandas as pd

df = pd.read_csv("sales.csv", parse_dates=["date"])
df["month"] = df["date"].dt.to_period("M")
df["revenue"] = df["price"] * df["quantity"]

summary = (
    df.groupby(["month", "product"], as_index=False)
    .agg(units=("quantity", "sum"), revenue=("revenue", "sum"))
    .sort_values(["month", "revenue"], ascending=[True, False])
)
print(summary.head(10).to_string(index=False))
""",
    ),
    (
        "Define a small multilayer perceptron in PyTorch and run one training step.",
        "python",
        r"""
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, d_hidden),
            nn.ReLU(),
            nn.Linear(d_hidden, d_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


model = MLP(16, 64, 3)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.randn(32, 16), torch.randint(0, 3, (32,))

loss = nn.functional.cross_entropy(model(x), y)
optimizer.zero_grad()
loss.backward()
optimizer.step()
print(f"loss: {loss.item():.4f}")
""",
    ),
    (
        "Combine two lists of different lengths pairwise, filling gaps with a default.",
        "python",
        r"""
from itertools import zip_longest

speakers = ["Ada", "Grace", "Alan"]
slots = ["09:00", "09:45"]

for speaker, slot in zip_longest(speakers, slots, fillvalue="TBD"):
    print(f"{slot:>5}  {speaker}")
# 09:00  Ada
# 09:45  Grace
#   TBD  Alan
""",
    ),
]

# JavaScript
CODE += [
    (
        "Write a debounce helper in JavaScript and use it on a search input.",
        "javascript",
        r"""
function debounce(fn, delayMs) {
  let timer = null;
  return function (...args) {
    clearTimeout(timer);
    timer = setTimeout(() => fn.apply(this, args), delayMs);
  };
}

const input = document.querySelector("#search");
const runSearch = debounce((event) => {
  console.log("searching for", event.target.value);
}, 300);

input.addEventListener("input", runSearch);
""",
    ),
    (
        "Fetch JSON from an API with async/await in JavaScript and handle HTTP errors.",
        "javascript",
        r"""
async function getUser(id) {
  const response = await fetch(`https://api.example.com/users/${id}`, {
    headers: { Accept: "application/json" },
  });
  if (!response.ok) {
    throw new Error(`request failed with status ${response.status}`);
  }
  return response.json();
}

getUser(42)
  .then((user) => console.log(user.name))
  .catch((err) => console.error("could not load user:", err.message));
""",
    ),
    (
        "Compute the total of a shopping cart with map, filter and reduce in JavaScript.",
        "javascript",
        r"""
const cart = [
  { name: "Notebook", price: 3.5, qty: 4, inStock: true },
  { name: "Pen", price: 1.2, qty: 10, inStock: true },
  { name: "Stapler", price: 8.99, qty: 1, inStock: false },
];

const total = cart
  .filter((item) => item.inStock)
  .map((item) => item.price * item.qty)
  .reduce((sum, lineTotal) => sum + lineTotal, 0);

console.log(`Total: $${total.toFixed(2)}`); // Total: $26.00
""",
    ),
    (
        "Toggle a dark-mode class on the page and remember the choice in localStorage.",
        "javascript",
        r"""
const STORAGE_KEY = "theme";
const button = document.getElementById("theme-toggle");

function applyTheme(theme) {
  document.body.classList.toggle("dark", theme === "dark");
  button.textContent = theme === "dark" ? "Light mode" : "Dark mode";
}

let theme = localStorage.getItem(STORAGE_KEY) || "light";
applyTheme(theme);

button.addEventListener("click", () => {
  theme = theme === "dark" ? "light" : "dark";
  localStorage.setItem(STORAGE_KEY, theme);
  applyTheme(theme);
});
""",
    ),
    (
        "Define a JavaScript class for a counter with private state.",
        "javascript",
        r"""
class Counter {
  #count = 0;
  #step;

  constructor(step = 1) {
    this.#step = step;
  }

  increment() {
    this.#count += this.#step;
    return this.#count;
  }

  reset() {
    this.#count = 0;
  }

  get value() {
    return this.#count;
  }
}

const c = new Counter(5);
c.increment();
c.increment();
console.log(c.value); // 10
""",
    ),
    (
        "Add a timeout to any promise with Promise.race.",
        "javascript",
        r"""
function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const slow = new Promise((resolve) => setTimeout(() => resolve("done"), 2000));

withTimeout(slow, 500)
  .then(console.log)
  .catch((err) => console.error(err.message)); // timed out after 500 ms
""",
    ),
    (
        "Write a deep equality check for plain objects and arrays in JavaScript.",
        "javascript",
        r"""
function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) {
    return false;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Object.keys(a);
  const keysB = Object.keys(b);
  if (keysA.length !== keysB.length) return false;
  return keysA.every((key) => Object.hasOwn(b, key) && deepEqual(a[key], b[key]));
}

console.log(deepEqual({ x: [1, 2, { y: 3 }] }, { x: [1, 2, { y: 3 }] })); // true
console.log(deepEqual({ x: 1 }, { x: 1, y: undefined }));                 // false
""",
    ),
    (
        "Group an array of objects by a property using reduce.",
        "javascript",
        r"""
const books = [
  { title: "Beloved", genre: "fiction" },
  { title: "Cosmos", genre: "science" },
  { title: "Middlemarch", genre: "fiction" },
  { title: "The Gene", genre: "science" },
  { title: "Maus", genre: "comics" },
];

const byGenre = books.reduce((groups, book) => {
  (groups[book.genre] ??= []).push(book.title);
  return groups;
}, {});

console.log(byGenre);
// { fiction: ["Beloved", "Middlemarch"], science: ["Cosmos", "The Gene"], comics: ["Maus"] }
""",
    ),
    (
        "Create an Express route that validates input and returns JSON.",
        "javascript",
        r"""
const express = require("express");

const app = express();
app.use(express.json());

const products = new Map();
let nextId = 1;

app.post("/products", (req, res) => {
  const { name, price } = req.body;
  if (typeof name !== "string" || name.trim() === "") {
    return res.status(400).json({ error: "name is required" });
  }
  if (!Number.isFinite(price) || price < 0) {
    return res.status(400).json({ error: "price must be a non-negative number" });
  }
  const product = { id: nextId++, name: name.trim(), price };
  products.set(product.id, product);
  res.status(201).json(product);
});

app.listen(3000, () => console.log("listening on port 3000"));
""",
    ),
    (
        "Throttle a scroll handler so it runs at most once every 200 milliseconds.",
        "javascript",
        r"""
function throttle(fn, intervalMs) {
  let last = 0;
  return (...args) => {
    const now = Date.now();
    if (now - last >= intervalMs) {
      last = now;
      fn(...args);
    }
  };
}

const header = document.querySelector("header");

window.addEventListener(
  "scroll",
  throttle(() => {
    header.classList.toggle("compact", window.scrollY > 80);
  }, 200),
);
""",
    ),
    (
        "Format prices for different locales with Intl.NumberFormat.",
        "javascript",
        r"""
const price = 1234567.891;

const formats = [
  ["en-US", "USD"],
  ["de-DE", "EUR"],
  ["ja-JP", "JPY"],
  ["en-IN", "INR"],
];

for (const [locale, currency] of formats) {
  const formatter = new Intl.NumberFormat(locale, { style: "currency", currency });
  console.log(`${locale.padEnd(6)} ${formatter.format(price)}`);
}
// en-US  $1,234,567.89
// de-DE  1.234.567,89 €
""",
    ),
    (
        "Remove duplicate values from an array while keeping the original order.",
        "javascript",
        r"""
const tags = ["js", "css", "html", "js", "node", "css", "react"];

const unique = [...new Set(tags)];
console.log(unique); // ["js", "css", "html", "node", "react"]

// For objects, deduplicate by a key instead:
const users = [
  { id: 3, name: "Ana" },
  { id: 1, name: "Bo" },
  { id: 3, name: "Ana (copy)" },
];
const byId = [...new Map(users.map((u) => [u.id, u])).values()];
console.log(byId.map((u) => u.name)); // ["Ana (copy)", "Bo"]
""",
    ),
    (
        "Read and update query-string parameters with URLSearchParams.",
        "javascript",
        r"""
const url = new URL("https://shop.example.com/search?q=lamp&page=2&sort=price");

console.log(url.searchParams.get("q"));     // "lamp"
console.log(url.searchParams.has("color")); // false

url.searchParams.set("page", "3");
url.searchParams.append("color", "green");
url.searchParams.delete("sort");

console.log(url.toString());
// https://shop.example.com/search?q=lamp&page=3&color=green

for (const [key, value] of url.searchParams) {
  console.log(`${key} = ${value}`);
}
""",
    ),
    (
        "Count the lines, words and characters of a file in Node.js.",
        "javascript",
        r"""
const fs = require("node:fs/promises");

async function wc(path) {
  const text = await fs.readFile(path, "utf8");
  const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  const words = text.split(/\s+/).filter(Boolean).length;
  return { lines, words, chars: text.length };
}

const file = process.argv[2];
if (!file) {
  console.error("usage: node wc.js <file>");
  process.exit(1);
}
wc(file)
  .then(({ lines, words, chars }) => console.log(`${lines} ${words} ${chars} ${file}`))
  .catch((err) => {
    console.error(err.message);
    process.exit(1);
  });
""",
    ),
    (
        "Split an array into chunks of a given size in JavaScript.",
        "javascript",
        r"""
function chunk(array, size) {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError("size must be a positive integer");
  }
  const result = [];
  for (let i = 0; i < array.length; i += size) {
    result.push(array.slice(i, i + size));
  }
  return result;
}

console.log(chunk([1, 2, 3, 4, 5, 6, 7], 3)); // [[1, 2, 3], [4, 5, 6], [7]]
console.log(chunk([], 2));                    // []
""",
    ),
    (
        "Capitalize the first letter of every word in a sentence.",
        "javascript",
        r"""
function titleCase(sentence) {
  const small = new Set(["a", "an", "and", "of", "the", "in", "on", "to"]);
  return sentence
    .toLowerCase()
    .split(" ")
    .map((word, i) =>
      i > 0 && small.has(word) ? word : word.charAt(0).toUpperCase() + word.slice(1),
    )
    .join(" ");
}

console.log(titleCase("the lord of the rings")); // "The Lord of the Rings"
console.log(titleCase("A TALE OF TWO CITIES"));  // "A Tale of Two Cities"
""",
    ),
    (
        "Retry an async operation a few times with a delay between attempts.",
        "javascript",
        r"""
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function retry(operation, { attempts = 3, delayMs = 500 } = {}) {
  let lastError;
  for (let i = 1; i <= attempts; i++) {
    try {
      return await operation();
    } catch (err) {
      lastError = err;
      console.warn(`attempt ${i} failed: ${err.message}`);
      if (i < attempts) await sleep(delayMs * i);
    }
  }
  throw lastError;
}

retry(() => fetch("https://api.example.com/status").then((r) => r.json()))
  .then((status) => console.log(status))
  .catch(() => console.error("service unavailable"));
""",
    ),
    (
        "Render a list of items into an HTML unordered list safely, without innerHTML.",
        "javascript",
        r"""
function renderList(container, items) {
  const ul = document.createElement("ul");
  for (const item of items) {
    const li = document.createElement("li");
    li.textContent = item.label; // textContent avoids HTML injection
    if (item.done) li.classList.add("done");
    ul.appendChild(li);
  }
  container.replaceChildren(ul);
}

renderList(document.getElementById("tasks"), [
  { label: "Buy milk", done: true },
  { label: "Reply to <Sam>", done: false },
]);
""",
    ),
]

# SQL
CODE += [
    (
        "Create tables for customers and orders with primary keys, foreign keys and checks.",
        "sql",
        r"""
CREATE TABLE customers (
    customer_id   INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    created_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE orders (
    order_id      INTEGER PRIMARY KEY,
    customer_id   INTEGER NOT NULL REFERENCES customers (customer_id),
    order_date    DATE NOT NULL,
    total_amount  NUMERIC(10, 2) NOT NULL CHECK (total_amount >= 0),
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled'))
);
""",
    ),
    (
        "List each customer's name with the number of orders and total amount spent.",
        "sql",
        r"""
SELECT c.name,
       COUNT(o.order_id)               AS order_count,
       COALESCE(SUM(o.total_amount), 0) AS total_spent
FROM customers AS c
LEFT JOIN orders AS o
       ON o.customer_id = c.customer_id
      AND o.status <> 'cancelled'
GROUP BY c.customer_id, c.name
ORDER BY total_spent DESC;
""",
    ),
    (
        "Find product categories whose average price is above 50, using GROUP BY and HAVING.",
        "sql",
        r"""
SELECT category,
       COUNT(*)             AS products,
       ROUND(AVG(price), 2) AS avg_price,
       MAX(price)           AS max_price
FROM products
WHERE discontinued = FALSE
GROUP BY category
HAVING AVG(price) > 50
ORDER BY avg_price DESC;
""",
    ),
    (
        "Rank employees by salary within each department with a window function.",
        "sql",
        r"""
SELECT department,
       employee_name,
       salary,
       RANK() OVER (PARTITION BY department ORDER BY salary DESC) AS salary_rank,
       salary - AVG(salary) OVER (PARTITION BY department)        AS diff_from_avg
FROM employees
ORDER BY department, salary_rank;
""",
    ),
    (
        "Use a common table expression to find each customer's first order.",
        "sql",
        r"""
WITH ranked_orders AS (
    SELECT o.*,
           ROW_NUMBER() OVER (
               PARTITION BY customer_id
               ORDER BY order_date, order_id
           ) AS rn
    FROM orders AS o
)
SELECT customer_id,
       order_id   AS first_order_id,
       order_date AS first_order_date,
       total_amount
FROM ranked_orders
WHERE rn = 1;
""",
    ),
    (
        "Give a 10 percent raise to employees in departments that met their sales target.",
        "sql",
        r"""
UPDATE employees
SET salary = ROUND(salary * 1.10, 2),
    updated_at = CURRENT_TIMESTAMP
WHERE department_id IN (
    SELECT d.department_id
    FROM departments AS d
    JOIN sales_targets AS t ON t.department_id = d.department_id
    WHERE t.year = 2024
      AND t.actual_sales >= t.target_sales
);
""",
    ),
    (
        "Find customers who have never placed an order.",
        "sql",
        r"""
-- Anti-join with NOT EXISTS, which also behaves correctly when columns contain NULLs.
SELECT c.customer_id, c.name, c.email
FROM customers AS c
WHERE NOT EXISTS (
    SELECT 1
    FROM orders AS o
    WHERE o.customer_id = c.customer_id
)
ORDER BY c.name;
""",
    ),
    (
        "Report monthly revenue for the last twelve months in PostgreSQL.",
        "sql",
        r"""
SELECT date_trunc('month', order_date)::date AS month,
       COUNT(*)                              AS orders,
       SUM(total_amount)                     AS revenue,
       ROUND(AVG(total_amount), 2)           AS avg_order_value
FROM orders
WHERE status IN ('paid', 'shipped')
  AND order_date >= date_trunc('month', CURRENT_DATE) - INTERVAL '11 months'
GROUP BY 1
ORDER BY 1;
""",
    ),
    (
        "Delete duplicate rows from a table, keeping the one with the lowest id.",
        "sql",
        r"""
DELETE FROM contacts
WHERE id IN (
    SELECT id
    FROM (
        SELECT id,
               ROW_NUMBER() OVER (
                   PARTITION BY LOWER(email)
                   ORDER BY id
               ) AS rn
        FROM contacts
    ) AS numbered
    WHERE rn > 1
);
""",
    ),
    (
        "Insert several rows at once and return the generated ids (PostgreSQL).",
        "sql",
        r"""
INSERT INTO products (name, category, price)
VALUES
    ('Ceramic mug',        'kitchen', 12.50),
    ('Linen tea towel',    'kitchen',  8.00),
    ('Desk lamp',          'office',  39.90),
    ('Notebook, dotted',   'office',   6.75)
RETURNING product_id, name;
""",
    ),
    (
        "Create a view of active subscriptions with the customer's email.",
        "sql",
        r"""
CREATE VIEW active_subscriptions AS
SELECT s.subscription_id,
       c.email,
       s.plan,
       s.started_on,
       s.renews_on
FROM subscriptions AS s
JOIN customers AS c ON c.customer_id = s.customer_id
WHERE s.cancelled_on IS NULL
  AND s.renews_on >= CURRENT_DATE;
""",
    ),
    (
        "Walk an employee hierarchy with a recursive CTE to list everyone under a manager.",
        "sql",
        r"""
WITH RECURSIVE reports AS (
    SELECT employee_id, name, manager_id, 1 AS depth
    FROM employees
    WHERE manager_id = 7          -- direct reports of employee 7

    UNION ALL

    SELECT e.employee_id, e.name, e.manager_id, r.depth + 1
    FROM employees AS e
    JOIN reports AS r ON e.manager_id = r.employee_id
)
SELECT depth, employee_id, name
FROM reports
ORDER BY depth, name;
""",
    ),
    (
        "Add indexes to speed up common lookups on an orders table.",
        "sql",
        r"""
-- Lookups of a customer's recent orders.
CREATE INDEX idx_orders_customer_date
    ON orders (customer_id, order_date DESC);

-- Most queries only look at unpaid orders, so a partial index stays small.
CREATE INDEX idx_orders_pending
    ON orders (order_date)
    WHERE status = 'pending';

-- Case-insensitive email search.
CREATE UNIQUE INDEX idx_customers_email_lower
    ON customers (LOWER(email));
""",
    ),
    (
        "Transfer money between two accounts inside a transaction.",
        "sql",
        r"""
-- accounts.balance has CHECK (balance >= 0), so an overdraft aborts the transaction.
BEGIN;

UPDATE accounts
SET balance = balance - 250.00
WHERE account_id = 101;

UPDATE accounts
SET balance = balance + 250.00
WHERE account_id = 202;

INSERT INTO transfers (from_account, to_account, amount, created_at)
VALUES (101, 202, 250.00, CURRENT_TIMESTAMP);

COMMIT;
""",
    ),
    (
        "Compute a running total of daily sales with a window function.",
        "sql",
        r"""
SELECT sale_date,
       daily_total,
       SUM(daily_total) OVER (ORDER BY sale_date)         AS running_total,
       AVG(daily_total) OVER (
           ORDER BY sale_date
           ROWS BETWEEN 6 PRECEDING AND CURRENT ROW
       )                                                   AS avg_7_day
FROM (
    SELECT CAST(created_at AS DATE) AS sale_date,
           SUM(amount)              AS daily_total
    FROM sales
    GROUP BY CAST(created_at AS DATE)
) AS daily
ORDER BY sale_date;
""",
    ),
]

# Bash
CODE += [
    (
        "Write a Bash script that backs up a directory into a timestamped tar.gz archive.",
        "bash",
        r"""
#!/usr/bin/env bash
set -euo pipefail

src="${1:?usage: backup.sh SOURCE_DIR [DEST_DIR]}"
dest="${2:-$HOME/backups}"
stamp="$(date +%Y%m%d-%H%M%S)"
name="$(basename "$src")-$stamp.tar.gz"

mkdir -p "$dest"
tar -czf "$dest/$name" -C "$(dirname "$src")" "$(basename "$src")"
echo "created $dest/$name ($(du -h "$dest/$name" | cut -f1))"
""",
    ),
    (
        "Rename every .txt file in the current directory to .md using a Bash loop.",
        "bash",
        r"""
#!/usr/bin/env bash
shopt -s nullglob

count=0
for file in *.txt; do
    target="${file%.txt}.md"
    if [[ -e "$target" ]]; then
        echo "skipping $file: $target exists" >&2
        continue
    fi
    mv -- "$file" "$target"
    count=$((count + 1))
done
echo "renamed $count file(s)"
""",
    ),
    (
        "Find the 10 largest files under a directory.",
        "bash",
        r"""
#!/usr/bin/env bash
# usage: largest.sh [DIR]
dir="${1:-.}"

find "$dir" -type f -printf '%s\t%p\n' 2>/dev/null \
    | sort -nr \
    | head -n 10 \
    | awk -F'\t' '{ printf "%8.1f MB  %s\n", $1 / 1048576, $2 }'
""",
    ),
    (
        "Check that required commands are installed before running a script.",
        "bash",
        r"""
#!/usr/bin/env bash
set -euo pipefail

require() {
    local missing=0
    for cmd in "$@"; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            echo "error: '$cmd' is required but not installed" >&2
            missing=1
        fi
    done
    return "$missing"
}

require git curl jq || exit 1
echo "all dependencies found"
""",
    ),
    (
        "Count the lines of Python code in a project, excluding virtual environments.",
        "bash",
        r"""
#!/usr/bin/env bash
root="${1:-.}"

find "$root" -name '*.py' \
    -not -path '*/.venv/*' \
    -not -path '*/node_modules/*' \
    -not -path '*/__pycache__/*' \
    -print0 \
  | xargs -0 wc -l \
  | sort -n \
  | tail -n 15
""",
    ),
    (
        "Parse command-line options in Bash with getopts.",
        "bash",
        r"""
#!/usr/bin/env bash
set -euo pipefail

verbose=0
output="report.txt"
count=10

usage() { echo "usage: $0 [-v] [-o FILE] [-n COUNT] INPUT" >&2; exit 2; }

while getopts ":vo:n:" opt; do
    case "$opt" in
        v) verbose=1 ;;
        o) output="$OPTARG" ;;
        n) count="$OPTARG" ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || usage

(( verbose )) && echo "reading $1, writing top $count lines to $output"
sort "$1" | uniq -c | sort -nr | head -n "$count" > "$output"
""",
    ),
    (
        "Wait until a TCP port accepts connections, with a timeout.",
        "bash",
        r"""
#!/usr/bin/env bash
# usage: wait-for.sh HOST PORT [TIMEOUT_SECONDS]
host="$1"
port="$2"
timeout="${3:-30}"

for ((i = 1; i <= timeout; i++)); do
    if (echo > "/dev/tcp/$host/$port") >/dev/null 2>&1; then
        echo "$host:$port is up after ${i}s"
        exit 0
    fi
    sleep 1
done

echo "timed out waiting for $host:$port" >&2
exit 1
""",
    ),
    (
        "Delete all but the newest five log archives in a directory.",
        "bash",
        r"""
#!/usr/bin/env bash
set -euo pipefail

log_dir="/var/log/myapp"
keep=5

mapfile -t archives < <(ls -1t "$log_dir"/*.log.gz 2>/dev/null || true)

if (( ${#archives[@]} > keep )); then
    for old in "${archives[@]:keep}"; do
        echo "removing $old"
        rm -f -- "$old"
    done
fi
""",
    ),
    (
        "Summarize the most frequent error messages in a set of log files.",
        "bash",
        r"""
#!/usr/bin/env bash
# Prints the 10 most common ERROR messages, ignoring timestamps.
grep -h 'ERROR' logs/*.log \
    | sed -E 's/^[0-9-]+[ T][0-9:.,]+ //' \
    | sed -E 's/[0-9]+/N/g' \
    | sort \
    | uniq -c \
    | sort -rn \
    | head -n 10
""",
    ),
    (
        "Download a file with curl, retrying on failure, and verify its SHA-256 checksum.",
        "bash",
        r"""
#!/usr/bin/env bash
set -euo pipefail

url="https://downloads.example.com/tool-1.4.2.tar.gz"
expected="3f1c0e5b8a7d2c9e4b6a1f0d8c7e5a3b2d1f9e8c7b6a5d4e3f2a1b0c9d8e7f6a"
out="$(basename "$url")"

curl --fail --location --retry 5 --retry-delay 2 --output "$out" "$url"

actual="$(sha256sum "$out" | awk '{print $1}')"
if [[ "$actual" != "$expected" ]]; then
    echo "checksum mismatch for $out" >&2
    rm -f "$out"
    exit 1
fi
echo "downloaded and verified $out"
""",
    ),
    (
        "Print disk usage warnings for filesystems that are over 85 percent full.",
        "bash",
        r"""
#!/usr/bin/env bash
threshold=85

df -P -x tmpfs -x devtmpfs | tail -n +2 | while read -r fs size used avail pct mount; do
    usage="${pct%\%}"
    if (( usage >= threshold )); then
        echo "WARNING: $mount is ${usage}% full ($avail blocks free on $fs)"
    fi
done
""",
    ),
]

# C
CODE += [
    (
        "Reverse a string in place in C.",
        "c",
        r"""
#include <stdio.h>
#include <string.h>

void reverse(char *s) {
    size_t i = 0, j = strlen(s);
    if (j == 0) return;
    for (j--; i < j; i++, j--) {
        char tmp = s[i];
        s[i] = s[j];
        s[j] = tmp;
    }
}

int main(void) {
    char word[] = "stressed";
    reverse(word);
    printf("%s\n", word); /* desserts */
    return 0;
}
""",
    ),
    (
        "Implement a singly linked list in C with push, print and free.",
        "c",
        r"""
#include <stdio.h>
#include <stdlib.h>

struct node {
    int value;
    struct node *next;
};

int push(struct node **head, int value) {
    struct node *n = malloc(sizeof *n);
    if (n == NULL) return -1;
    n->value = value;
    n->next = *head;
    *head = n;
    return 0;
}

void print_list(const struct node *n) {
    for (; n != NULL; n = n->next) printf("%d -> ", n->value);
    printf("NULL\n");
}

void free_list(struct node *n) {
    while (n != NULL) {
        struct node *next = n->next;
        free(n);
        n = next;
    }
}

int main(void) {
    struct node *head = NULL;
    for (int i = 1; i <= 3; i++) push(&head, i * 10);
    print_list(head); /* 30 -> 20 -> 10 -> NULL */
    free_list(head);
    return 0;
}
""",
    ),
    (
        "Count characters, words and lines read from standard input in C.",
        "c",
        r"""
#include <ctype.h>
#include <stdio.h>

int main(void) {
    long chars = 0, words = 0, lines = 0;
    int c, in_word = 0;

    while ((c = getchar()) != EOF) {
        chars++;
        if (c == '\n') lines++;
        if (isspace(c)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    printf("%ld %ld %ld\n", lines, words, chars);
    return 0;
}
""",
    ),
    (
        "Sort an array of integers with qsort in C.",
        "c",
        r"""
#include <stdio.h>
#include <stdlib.h>

static int compare_ints(const void *a, const void *b) {
    int x = *(const int *)a;
    int y = *(const int *)b;
    return (x > y) - (x < y); /* avoids overflow from x - y */
}

int main(void) {
    int data[] = {42, -7, 19, 0, 88, 3, -15};
    size_t n = sizeof data / sizeof data[0];

    qsort(data, n, sizeof data[0], compare_ints);

    for (size_t i = 0; i < n; i++) printf("%d ", data[i]);
    printf("\n");
    return 0;
}
""",
    ),
    (
        "Define a struct for 2D points in C and compute the distance between two points.",
        "c",
        r"""
#include <math.h>
#include <stdio.h>

typedef struct {
    double x;
    double y;
} Point;

double distance(Point a, Point b) {
    double dx = a.x - b.x;
    double dy = a.y - b.y;
    return sqrt(dx * dx + dy * dy);
}

int main(void) {
    Point home = {1.0, 2.0};
    Point shop = {4.0, 6.0};
    printf("distance: %.2f\n", distance(home, shop)); /* 5.00 */
    return 0;
}
""",
    ),
    (
        "Write an iterative binary search over a sorted int array in C.",
        "c",
        r"""
#include <stddef.h>
#include <stdio.h>

/* Returns the index of target in a[0..n-1], or -1 if it is absent. */
long binary_search(const int *a, size_t n, int target) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < target) {
            lo = mid + 1;
        } else if (a[mid] > target) {
            hi = mid;
        } else {
            return (long)mid;
        }
    }
    return -1;
}

int main(void) {
    int primes[] = {2, 3, 5, 7, 11, 13, 17, 19};
    printf("%ld %ld\n", binary_search(primes, 8, 13), binary_search(primes, 8, 4)); /* 5 -1 */
    return 0;
}
""",
    ),
    (
        "Parse an integer from a string safely in C using strtol.",
        "c",
        r"""
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

/* Returns 0 on success and stores the value in *out; -1 on any error. */
int parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0') return -1;       /* not a number, or trailing junk */
    if (errno == ERANGE || v < INT_MIN || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int n;
        if (parse_int(argv[i], &n) == 0) {
            printf("%s -> %d\n", argv[i], n);
        } else {
            fprintf(stderr, "invalid integer: %s\n", argv[i]);
        }
    }
    return 0;
}
""",
    ),
    (
        "Implement a growable array of doubles in C with realloc.",
        "c",
        r"""
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    double *data;
    size_t len;
    size_t cap;
} Vec;

int vec_push(Vec *v, double x) {
    if (v->len == v->cap) {
        size_t new_cap = v->cap ? v->cap * 2 : 4;
        double *p = realloc(v->data, new_cap * sizeof *p);
        if (p == NULL) return -1; /* old buffer is still valid */
        v->data = p;
        v->cap = new_cap;
    }
    v->data[v->len++] = x;
    return 0;
}

int main(void) {
    Vec v = {NULL, 0, 0};
    for (int i = 0; i < 10; i++) {
        if (vec_push(&v, i * 0.5) != 0) return 1;
    }
    printf("len=%zu cap=%zu last=%.1f\n", v.len, v.cap, v.data[v.len - 1]);
    free(v.data);
    return 0;
}
""",
    ),
    (
        "Swap two integers through pointers in C.",
        "c",
        r"""
#include <stdio.h>

void swap(int *a, int *b) {
    int tmp = *a;
    *a = *b;
    *b = tmp;
}

int main(void) {
    int x = 3, y = 8;
    swap(&x, &y);
    printf("x=%d y=%d\n", x, y); /* x=8 y=3 */
    return 0;
}
""",
    ),
    (
        "Copy a file in C using fread and fwrite with error checking.",
        "c",
        r"""
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SRC DST\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (!in) { perror(argv[1]); return 1; }
    FILE *out = fopen(argv[2], "wb");
    if (!out) { perror(argv[2]); fclose(in); return 1; }

    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) { perror("write"); break; }
    }
    int failed = ferror(in) || ferror(out);
    fclose(in);
    if (fclose(out) != 0) failed = 1;
    return failed ? 1 : 0;
}
""",
    ),
    (
        "Count how often each letter appears in a string in C, ignoring case.",
        "c",
        r"""
#include <ctype.h>
#include <stdio.h>

int main(void) {
    const char *text = "The quick brown fox jumps over the lazy dog";
    int counts[26] = {0};

    for (const char *p = text; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalpha(c)) counts[tolower(c) - 'a']++;
    }
    for (int i = 0; i < 26; i++) {
        if (counts[i] > 1) printf("%c: %d\n", 'a' + i, counts[i]);
    }
    return 0;
}
""",
    ),
]


# ---------------------------------------------------------------------------
# Math word problems (generated)
# ---------------------------------------------------------------------------

PEOPLE = [
    ("Amara", "she"),
    ("Ben", "he"),
    ("Carmen", "she"),
    ("Dmitri", "he"),
    ("Elena", "she"),
    ("Farid", "he"),
    ("Grace", "she"),
    ("Hiroshi", "he"),
    ("Ines", "she"),
    ("Jamal", "he"),
    ("Keiko", "she"),
    ("Liam", "he"),
    ("Mariana", "she"),
    ("Noah", "he"),
    ("Olga", "she"),
    ("Pedro", "he"),
    ("Priya", "she"),
    ("Quentin", "he"),
    ("Rosa", "she"),
    ("Samuel", "he"),
    ("Tamika", "she"),
    ("Umar", "he"),
    ("Valentina", "she"),
    ("Wei", "he"),
    ("Ximena", "she"),
    ("Yusuf", "he"),
    ("Zoe", "she"),
    ("Arjun", "he"),
    ("Beatriz", "she"),
    ("Connor", "he"),
    ("Dalia", "she"),
    ("Emeka", "he"),
    ("Fatima", "she"),
    ("Gabriel", "he"),
    ("Hannah", "she"),
    ("Ivan", "he"),
    ("Jasmine", "she"),
    ("Kofi", "he"),
    ("Lucia", "she"),
    ("Mateo", "he"),
    ("Nadia", "she"),
    ("Oscar", "he"),
    ("Paula", "she"),
    ("Rahul", "he"),
    ("Sofia", "she"),
    ("Tomas", "he"),
    ("Uma", "she"),
    ("Victor", "he"),
    ("Wendy", "she"),
    ("Yara", "she"),
    ("Diego", "he"),
    ("Mei", "she"),
    ("Kwame", "he"),
    ("Leila", "she"),
    ("Marcus", "he"),
    ("Anya", "she"),
]

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


# --- self-check of worked solutions -----------------------------------------

_NUM = r"[$(]*\d+(?:\.\d+)?\)*"
_EQ_RE = re.compile(
    rf"(?P<lhs>{_NUM}(?:\s*[-+*/]\s*{_NUM})+)\s*=\s*\$?(?P<rhs>-?\d+(?:\.\d+)?(?:/\d+)?)(?![\d/])"
)


def _exact(expr: str) -> Fraction:
    """Evaluate + - * / ( ) on decimal literals exactly."""
    tree = ast.parse(expr.replace("$", ""), mode="eval")

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(ast.get_source_segment(expr.replace("$", ""), node))
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
        raise ValueError(f"unsupported expression: {expr!r}")

    return ev(tree)


def check_arithmetic(text: str) -> int:
    """Verify every ``a op b = c`` statement in ``text``; return how many were checked."""
    checked = 0
    for m in _EQ_RE.finditer(text):
        before = text[: m.start()]
        prev = before.rstrip()[-1:]
        if (before and before[-1].isalnum()) or (prev and prev in "+-*/"):
            continue  # part of a symbolic expression such as "2x + 3 = 11"
        lhs, rhs = m.group("lhs"), m.group("rhs")
        if lhs.count("(") != lhs.count(")"):
            raise AssertionError(f"unbalanced expression {lhs!r} in: {text}")
        if _exact(lhs) != Fraction(rhs):
            raise AssertionError(f"wrong arithmetic {lhs} = {rhs} in: {text}")
        checked += 1
    return checked


def make_math_sample(template, rng: random.Random) -> str:
    question, steps, answer = template(rng)
    answer = Fraction(answer)
    final = fmt(answer)
    text = question + "\n\n" + "\n".join(steps) + f"\n#### {final}"
    # Self-check: every arithmetic statement is exact, there is at least one, and the
    # final answer is stated in the last step of the worked solution.
    if check_arithmetic(text) == 0:
        raise AssertionError(f"no checkable arithmetic in: {text}")
    last = steps[-1].replace("$", "")
    numbers = {Fraction(n) for n in re.findall(r"\d+(?:\.\d+)?(?:/\d+)?", last)}
    if answer not in numbers:
        raise AssertionError(f"final answer {final} not derived in last step: {text}")
    return text


def generate_math(count: int, rng: random.Random) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    order: list = []
    while len(out) < count:
        if not order:
            order = list(TEMPLATES)
            rng.shuffle(order)
        template = order.pop()
        text = make_math_sample(template, rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


def clean_prose(raw: str) -> str:
    """Unwrap the hand-wrapped source text: blank lines separate paragraphs."""
    paragraphs = [" ".join(p.split()) for p in textwrap.dedent(raw).strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def code_sample(description: str, language: str, code: str) -> str:
    body = textwrap.dedent(code).strip("\n")
    n_lines = body.count("\n") + 1
    if not 5 <= n_lines <= 40:
        raise AssertionError(f"code sample has {n_lines} lines: {description}")
    if any(line != line.rstrip() or "\t" in line for line in body.splitlines()):
        raise AssertionError(f"trailing whitespace or tab in code sample: {description}")
    if language == "python":
        ast.parse(body)  # every Python snippet must at least be valid syntax
    return f"{description}\n\n```{language}\n{body}\n```"


def word_count(text: str) -> int:
    return len(text.split())


def build_records() -> list[dict[str, str]]:
    english = [clean_prose(t) for t in ENGLISH]
    for text in english:
        n = word_count(text)
        if not 60 <= n <= 250:
            raise AssertionError(f"English sample has {n} words: {text[:60]}...")

    descriptions = Counter(d for d, _, _ in CODE)
    repeated = [d for d, c in descriptions.items() if c > 1]
    if repeated:
        raise AssertionError(f"repeated code task descriptions: {repeated}")
    code = [code_sample(*item) for item in CODE]

    math_count = round((len(english) + len(code)) / 2)
    math = generate_math(math_count, random.Random(SEED))

    records: list[dict[str, str]] = []
    for domain, texts in (("english", english), ("math", math), ("code", code)):
        for i, text in enumerate(texts, start=1):
            records.append({"text": text, "domain": domain, "id": f"{domain}-{i:03d}"})

    texts = [r["text"] for r in records]
    if len(set(texts)) != len(texts):
        dupes = [t[:60] for t, c in Counter(texts).items() if c > 1]
        raise AssertionError(f"duplicate samples: {dupes}")

    random.Random(SEED + 1).shuffle(records)
    return records


def render(records: list[dict[str, str]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def summary(records: list[dict[str, str]]) -> str:
    lines = ["domain    samples  words(mean  min  max)  chars(mean)"]
    for domain in ("english", "math", "code"):
        words = [word_count(r["text"]) for r in records if r["domain"] == domain]
        chars = [len(r["text"]) for r in records if r["domain"] == domain]
        lines.append(
            f"{domain:<9} {len(words):>7}  {sum(words) / len(words):>10.1f} {min(words):>4} "
            f"{max(words):>4}  {sum(chars) / len(chars):>11.1f}"
        )
    words = [word_count(r["text"]) for r in records]
    lines.append(
        f"{'total':<9} {len(records):>7}  {sum(words) / len(words):>10.1f} "
        f"{min(words):>4} {max(words):>4}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if default.jsonl is not up to date",
    )
    parser.add_argument("--output", type=Path, default=OUT_PATH, help="where to write the corpus")
    args = parser.parse_args(argv)

    records = build_records()
    content = render(records)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != content:
            print(f"{args.output} is out of date; run python calibration/generate.py")
            return 1
        print(f"{args.output} is up to date")
    else:
        args.output.write_text(content, encoding="utf-8", newline="\n")
        print(
            f"wrote {len(records)} samples ({len(content.encode('utf-8'))} bytes) to {args.output}"
        )
    print(summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
