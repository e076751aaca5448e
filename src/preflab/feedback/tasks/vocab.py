"""Word lists the prompt templates draw from (fixed, so a seed always yields the same tasks)."""

from __future__ import annotations

# topic phrase -> its head noun (the word an answer about it naturally uses)
TOPICS: dict[str, str] = {
    "the ocean": "ocean", "coffee": "coffee", "a rainy day": "rain", "bicycles": "bicycle",
    "the moon": "moon", "libraries": "library", "gardening": "garden", "winter": "winter",
    "trains": "train", "chess": "chess", "bread baking": "bread", "mountains": "mountain",
    "music": "music", "cats": "cat", "dogs": "dog", "the city at night": "city",
    "volcanoes": "volcano", "honey bees": "bee", "friendship": "friend", "the desert": "desert",
    "computers": "computer", "forests": "forest", "soccer": "soccer", "birthdays": "birthday",
    "rivers": "river", "the sun": "sun", "painting": "paint", "snow": "snow",
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
    "blue", "quiet", "window", "river", "golden", "morning", "clock", "smile", "paper", "garden",
    "light", "green", "stone", "music", "bridge", "warm", "island", "letter", "silver", "journey",
]

CATEGORIES = [
    "fruits", "colors", "animals", "countries", "vegetables", "sports", "musical instruments",
    "kitchen tools", "flowers", "planets", "jobs", "board games", "birds", "cities", "tools",
]

ENDINGS = [
    "Have a nice day!", "That is all.", "Thank you for reading.", "The end.",
    "I hope this helps.", "Thanks for asking.", "Stay curious.", "Enjoy!",
]

PRODUCTS = [
    "a coffee maker", "a pair of running shoes", "a laptop", "a hotel stay", "a new phone",
    "a pizza restaurant", "a science fiction novel", "a vacuum cleaner", "a rain jacket",
    "a video game", "a desk chair", "a pair of headphones", "a bakery", "a camping tent",
    "a blender", "a museum visit", "a train journey", "a wool sweater", "an electric kettle",
    "a board game", "a yoga class", "a sushi bar", "a city bus tour", "a pair of sunglasses",
    "a houseplant shop", "a mobile banking app", "a backpack", "a concert",
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
]

# How an answer that must avoid a word is asked for ({topic}, {word})
EXCLUDE_TEMPLATES = [
    "Describe {topic} in two sentences without using the word '{word}'.",
    "Write three sentences about {topic}, but never use the word '{word}'.",
    "Explain what is special about {topic} without ever saying '{word}'.",
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
