"""Word lists the prompt templates draw from (fixed, so a seed always yields the same tasks)."""

from __future__ import annotations

# topic phrase -> its head noun (the word an answer about it naturally uses)
TOPICS: dict[str, str] = {
    "the ocean": "ocean",
    "coffee": "coffee",
    "a rainy day": "rain",
    "bicycles": "bicycle",
    "the moon": "moon",
    "libraries": "library",
    "gardening": "garden",
    "winter": "winter",
    "trains": "train",
    "chess": "chess",
    "bread baking": "bread",
    "mountains": "mountain",
    "music": "music",
    "cats": "cat",
    "dogs": "dog",
    "the city at night": "city",
    "volcanoes": "volcano",
    "honey bees": "bee",
    "friendship": "friend",
    "the desert": "desert",
    "computers": "computer",
    "forests": "forest",
    "soccer": "soccer",
    "birthdays": "birthday",
    "rivers": "river",
    "the sun": "sun",
    "painting": "paint",
    "snow": "snow",
}

INSTRUCTIONS = [
    "Describe {topic}.",
    "Explain why people enjoy {topic}.",
    "Tell me something interesting about {topic}.",
    "Write a short note about {topic}.",
    "What should a child know about {topic}?",
    "Give me your thoughts on {topic}.",
]

KEYWORDS = [
    "blue",
    "quiet",
    "window",
    "river",
    "golden",
    "morning",
    "clock",
    "smile",
    "paper",
    "garden",
    "light",
    "green",
    "stone",
    "music",
    "bridge",
    "warm",
    "island",
    "letter",
    "silver",
    "journey",
]

CATEGORIES = [
    "fruits",
    "colors",
    "animals",
    "countries",
    "vegetables",
    "sports",
    "musical instruments",
    "kitchen tools",
    "flowers",
    "planets",
    "jobs",
    "board games",
    "birds",
    "cities",
    "tools",
]

ENDINGS = [
    "Have a nice day!",
    "That is all.",
    "Thank you for reading.",
    "The end.",
    "I hope this helps.",
    "Thanks for asking.",
    "Stay curious.",
    "Enjoy!",
]

PRODUCTS = [
    "a coffee maker",
    "a pair of running shoes",
    "a laptop",
    "a hotel stay",
    "a new phone",
    "a pizza restaurant",
    "a science fiction novel",
    "a vacuum cleaner",
    "a rain jacket",
    "a video game",
    "a desk chair",
    "a pair of headphones",
    "a bakery",
    "a camping tent",
    "a blender",
    "a museum visit",
    "a train journey",
    "a wool sweater",
    "an electric kettle",
    "a board game",
    "a yoga class",
    "a sushi bar",
    "a city bus tour",
    "a pair of sunglasses",
    "a houseplant shop",
    "a mobile banking app",
    "a backpack",
    "a concert",
]

# How a review is asked for ({target}: positive / negative, {product}: one of PRODUCTS)
REVIEW_TEMPLATES = [
    "Write a short {target} review of {product}.",
    "Write a {target} customer comment about {product}.",
    "In a few sentences, give a {target} opinion of {product}.",
]

# entity -> candidate keys (a task asks for three of them, in a drawn order)
ENTITIES: dict[str, list[str]] = {
    "a fictional person": ["name", "age", "city", "job", "hobby"],
    "a book": ["title", "author", "year", "genre", "pages"],
    "a movie": ["title", "director", "year", "genre", "rating"],
    "a city": ["name", "country", "population", "language", "river"],
    "a pet": ["name", "species", "age", "color", "owner"],
    "a car": ["make", "model", "year", "color", "price"],
    "a recipe": ["name", "servings", "time", "cuisine", "difficulty"],
    "a song": ["title", "artist", "year", "album", "length"],
    "a planet": ["name", "moons", "diameter", "distance", "type"],
    "a restaurant": ["name", "cuisine", "city", "rating", "price"],
    "a company": ["name", "industry", "founded", "employees", "country"],
    "a sports team": ["name", "sport", "city", "coach", "founded"],
    "a laptop": ["brand", "model", "price", "memory", "weight"],
    "a student": ["name", "grade", "school", "subject", "age"],
    "a flight": ["airline", "origin", "destination", "departure", "duration"],
    "an animal": ["species", "habitat", "diet", "lifespan", "weight"],
}

JSON_TEMPLATES = [
    "Give a JSON object describing {entity} with the keys {keys}. Reply with JSON only.",
    "Describe {entity} as a JSON object with exactly the keys {keys}. Output only the JSON.",
    "Return only a JSON object for {entity}, using the keys {keys}.",
]

# How a bulleted list is asked for ({k}: how many, {what}: one of CATEGORIES)
BULLET_TEMPLATES = [
    "List {k} {what} as a bulleted list. Start every line with '- ' and write nothing else.",
    "Name {k} {what}. Answer only with a bulleted list, one item per line, each line starting with '- '.",
    "Give me {k} {what}, formatted as a bulleted list ('- ' before each item) and nothing else.",
]

# How an answer that must avoid a word is asked for ({topic}, {word})
EXCLUDE_TEMPLATES = [
    "Describe {topic} in two sentences without using the word '{word}'.",
    "Write three sentences about {topic}, but never use the word '{word}'.",
    "Explain what is special about {topic} without ever saying '{word}'.",
    "Tell a child about {topic} in a few sentences. Do not use the word '{word}'.",
    "Write a short paragraph on {topic}. The word '{word}' is not allowed.",
    "Give two facts about {topic} without writing the word '{word}'.",
]

QUESTIONS = [
    "What is your favorite season and why?",
    "Why is the sky blue?",
    "What is a good breakfast?",
    "How do plants grow?",
    "What makes a good friend?",
    "Why do people travel?",
    "What is the best way to learn a language?",
    "Why should we drink water?",
]

# topic phrase -> words an on-topic answer is likely to use besides the head noun (scorers of word_limit and
# exclude_keyword ask for one of them, so that a generic or constant answer is not on topic)
ASSOCIATED: dict[str, tuple[str, ...]] = {
    "the ocean": ("sea", "water", "wave", "salt", "fish", "deep", "marine", "whale", "coral", "tide", "beach"),
    "coffee": ("bean", "cup", "caffeine", "drink", "brew", "espresso", "morning", "roast", "mug", "aroma"),
    "a rainy day": (
        "rainy",
        "raining",
        "rainfall",
        "umbrella",
        "wet",
        "cloud",
        "puddle",
        "storm",
        "drop",
        "grey",
        "gray",
        "cozy",
    ),
    "bicycles": ("bike", "ride", "riding", "pedal", "wheel", "cycling", "cyclist", "tire", "tyre", "gear"),
    "the moon": ("lunar", "night", "sky", "orbit", "earth", "crater", "phase", "tide", "astronaut", "full"),
    "libraries": ("book", "read", "reading", "librarian", "shelf", "shelves", "borrow", "quiet", "knowledge"),
    "gardening": ("plant", "flower", "soil", "seed", "grow", "growing", "vegetable", "water", "weed", "dig"),
    "winter": ("cold", "snow", "ice", "frost", "season", "december", "january", "warm", "coat", "freezing"),
    "trains": ("rail", "railway", "track", "station", "travel", "passenger", "locomotive", "journey", "ride"),
    "chess": (
        "board",
        "piece",
        "king",
        "queen",
        "pawn",
        "knight",
        "bishop",
        "rook",
        "move",
        "game",
        "strategy",
        "checkmate",
    ),
    "bread baking": ("baking", "bake", "dough", "flour", "yeast", "oven", "loaf", "knead", "crust"),
    "mountains": ("peak", "climb", "climbing", "hike", "hiking", "summit", "snow", "high", "valley", "rock"),
    "music": ("song", "melody", "sound", "rhythm", "instrument", "listen", "sing", "band", "note", "play"),
    "cats": ("kitten", "pet", "purr", "fur", "feline", "whisker", "paw", "meow", "independent"),
    "dogs": ("puppy", "pet", "bark", "loyal", "walk", "fur", "tail", "companion", "paw", "canine"),
    "the city at night": ("night", "light", "street", "building", "urban", "dark", "neon", "skyline", "busy"),
    "volcanoes": ("lava", "eruption", "erupt", "magma", "ash", "mountain", "crater", "hot", "earth"),
    "honey bees": ("honey", "hive", "flower", "pollen", "pollinate", "nectar", "queen", "buzz", "colony", "insect"),
    "friendship": ("friendly", "trust", "support", "loyal", "together", "companion", "care", "relationship", "share"),
    "the desert": ("sand", "dry", "hot", "cactus", "dune", "heat", "oasis", "arid", "camel", "sun"),
    "computers": (
        "software",
        "hardware",
        "program",
        "data",
        "screen",
        "keyboard",
        "internet",
        "machine",
        "technology",
        "code",
    ),
    "forests": ("tree", "wood", "woods", "leaf", "leaves", "wildlife", "green", "nature", "animal", "oxygen"),
    "soccer": ("football", "ball", "goal", "team", "player", "match", "field", "kick", "game", "sport"),
    "birthdays": ("cake", "party", "gift", "present", "celebrate", "celebration", "candle", "age", "friend", "year"),
    "rivers": ("water", "stream", "flow", "flowing", "fish", "bank", "current", "sea", "valley", "boat"),
    "the sun": ("star", "light", "heat", "solar", "sky", "energy", "warm", "sunlight", "earth", "bright"),
    "painting": ("painter", "art", "artist", "color", "colour", "canvas", "brush", "picture", "create", "artwork"),
    "snow": ("snowflake", "cold", "winter", "white", "ice", "flake", "frozen", "snowman", "freeze"),
}
