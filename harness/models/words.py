"""The words synthetic prompts are made of (and the tiny test model's vocabulary covers)."""

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "if so no will can more other about many then them these may time into some could "
    "two first only new very also over such after where most made between being under "
    "system model energy cost memory token power market river city garden music letter "
    "history science window morning engine result number answer question water light "
    "mountain report village winter signal process design language network machine "
    "research market measure station market value table paper silver forest harbor "
    "bridge planet orbit theory method culture journey season kitchen doctor student"
).split()
