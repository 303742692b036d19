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

# A second, disjoint set of names for the "ioi-b" task (a different text distribution from "ioi").
MALE_NAMES_B = [
    "Chris", "Alex", "Sam", "Ben", "Nick", "Tim", "Joe", "Dan", "Mike", "Steve",
    "Jim", "Bob", "Bill", "Fred", "Tony", "Max", "Jeff", "Greg", "Carl", "Roger",
    "Harry", "Oliver", "Charlie", "Jake", "Tyler", "Josh", "Noah", "Ethan", "Leo", "Oscar",
    "Victor", "Martin", "Louis", "Philip", "Neil", "Gary", "Larry", "Dennis", "Walter", "Albert",
]

FEMALE_NAMES_B = [
    "Stella", "Amber", "Ashley", "Betty", "Carol", "Donna", "Eva", "Fiona", "Gina", "Holly",
    "Irene", "Joan", "Kelly", "Lily", "Mia", "Nina", "Paula", "Rebecca", "Sally", "Tina",
    "Wendy", "Zoe", "Ella", "Chloe", "Ava", "Beth", "Jill", "Ann", "Barbara", "Patricia",
    "Monica", "Angela", "Heather", "Lauren", "Molly", "Joyce", "Kim", "Tracy", "Eve", "Vera",
]

NAMES_B = MALE_NAMES_B + FEMALE_NAMES_B
