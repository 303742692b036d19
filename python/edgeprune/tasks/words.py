"""Word lists for the generated tasks. First names are common ones that GPT-2 encodes as a single
token after a space; a tokenizer that splits some of them simply drops the pairs that use them."""

MALE_NAMES = [
    "John", "James", "Michael", "David", "Robert", "William", "Thomas", "Daniel", "Paul", "Mark",
    "Peter", "George", "Richard", "Steven", "Kevin", "Brian", "Eric", "Jason", "Matthew", "Andrew",
    "Ryan", "Jacob", "Kyle", "Adam", "Henry", "Jack", "Luke", "Scott", "Sean", "Simon",
    "Tom", "Frank", "Ian", "Joseph", "Arthur", "Charles", "Edward", "Patrick", "Aaron", "Justin",
]

FEMALE_NAMES = [
    "Mary", "Sarah", "Jessica", "Jennifer", "Elizabeth", "Emily", "Rachel", "Lisa", "Laura", "Anna",
    "Amy", "Kate", "Alice", "Rose", "Maria", "Michelle", "Emma", "Julia", "Susan", "Linda",
    "Karen", "Nancy", "Helen", "Diana", "Grace", "Claire", "Megan", "Hannah", "Lucy", "Sophie",
    "Victoria", "Olivia", "Natalie", "Ruth", "Jane", "Sandra", "Katie", "Amanda", "Melissa", "Jenny",
]

NAMES = MALE_NAMES + FEMALE_NAMES

PLACES = [
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station", "park",
    "library", "market", "beach", "museum", "cafe", "church", "gym", "airport", "bank",
]

OBJECTS = [
    "drink", "snack", "book", "ring", "necklace", "bone", "basketball", "computer", "cake", "gift",
    "ticket", "phone", "hat", "pen", "key", "bag", "card", "letter",
]
