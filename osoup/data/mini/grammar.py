"""A small multilingual lexicon and grammar: one semantic frame, six surface languages.

The mini corpus needs text that behaves like real parallel data: the same meaning rendered
with each language's own morphology and word order, so that ASR has to learn real spelling
and S2TT has to learn real reordering. A :class:`Frame` holds the meaning (who does what to
what, when, where, and whether it is a statement, a question or a reported clause);
:func:`render` turns it into a sentence of one language. Differences that are modelled:

- adjective position: en/de/zh before the noun; es/ca after; fr after except the
  "BAGS" adjectives (grand, petit, beau, nouveau, vieux, jeune), with the prevocalic
  masculine forms (un vieil homme, le bel oiseau);
- gender/number agreement of articles, numerals (une/dues) and adjectives (fr/es/ca/de),
  German case (nominative subject, accusative object) and strong/weak/mixed adjective endings;
- German verb-second (fronted adverbials invert subject and verb), verb-final in subordinate
  clauses, sentence-final participles and infinitives;
- tenses: English do-support in questions; French passé composé and synthetic future;
  Spanish perfect and synthetic future; Catalan periphrastic past (va + infinitive);
  Chinese 了 / 会 and no inflection;
- elision (l'homme, j'ai, qu'il), a/an, Spanish/Catalan pro-drop, Spanish ¿…?, French " ?",
  Chinese measure words (一本书, 两只猫), 两 versus 二, full-width punctuation, no spaces.

Everything is deterministic given the random generator passed in.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

LANGS = ("en", "fr", "de", "es", "ca", "zh")
TENSES = ("pres", "past", "fut")
MOODS = ("decl", "ques", "sub")
PRONOUNS = ("1sg", "1pl", "3sg_m", "3sg_f", "3pl_m", "3pl_f")

# ---------------------------------------------------------------------------------------------
# Lexicon. Nouns: key -> (tags, en "sg/pl", fr "sg/pl/g", de "sg/pl/g", es "sg/pl/g",
# ca "sg/pl/g", zh "word/measure word"). Tags: h = human, a = animal, other tags are used by
# the verbs' selectional restrictions (f food, r readable, s writable, o openable, p portable, b breakable,
# w washable, c cleanable, t paintable/buildable, l losable, g goods, x throwable).
_NOUN_TABLE = """
man|h|man/men|homme/hommes/m|Mann/Männer/m|hombre/hombres/m|home/homes/m|男人/个
woman|h|woman/women|femme/femmes/f|Frau/Frauen/f|mujer/mujeres/f|dona/dones/f|女人/个
child|h|child/children|enfant/enfants/m|Kind/Kinder/n|niño/niños/m|nen/nens/m|孩子/个
boy|h|boy/boys|garçon/garçons/m|Junge/Jungen/m|chico/chicos/m|noi/nois/m|男孩/个
girl|h|girl/girls|fille/filles/f|Mädchen/Mädchen/n|chica/chicas/f|noia/noies/f|女孩/个
teacher|h|teacher/teachers|professeur/professeurs/m|Lehrer/Lehrer/m|profesor/profesores/m|professor/professors/m|老师/位
doctor|h|doctor/doctors|médecin/médecins/m|Ärztin/Ärztinnen/f|médica/médicas/f|metgessa/metgesses/f|医生/位
student|h|student/students|étudiante/étudiantes/f|Student/Studenten/m|estudiante/estudiantes/m|estudiant/estudiants/m|学生/个
farmer|h|farmer/farmers|paysan/paysans/m|Bauer/Bauern/m|granjero/granjeros/m|pagès/pagesos/m|农民/个
cook|h|cook/cooks|cuisinier/cuisiniers/m|Koch/Köche/m|cocinero/cocineros/m|cuiner/cuiners/m|厨师/个
friend|h|friend/friends|amie/amies/f|Freund/Freunde/m|amigo/amigos/m|amic/amics/m|朋友/个
neighbour|h|neighbour/neighbours|voisin/voisins/m|Nachbarin/Nachbarinnen/f|vecina/vecinas/f|veïna/veïnes/f|邻居/个
sister|h|sister/sisters|sœur/sœurs/f|Schwester/Schwestern/f|hermana/hermanas/f|germana/germanes/f|姐姐/个
brother|h|brother/brothers|frère/frères/m|Bruder/Brüder/m|hermano/hermanos/m|germà/germans/m|哥哥/个
dog|a w|dog/dogs|chien/chiens/m|Hund/Hunde/m|perro/perros/m|gos/gossos/m|狗/只
cat|a w p|cat/cats|chat/chats/m|Katze/Katzen/f|gato/gatos/m|gat/gats/m|猫/只
bird|a p|bird/birds|oiseau/oiseaux/m|Vogel/Vögel/m|pájaro/pájaros/m|ocell/ocells/m|鸟/只
horse|a w|horse/horses|cheval/chevaux/m|Pferd/Pferde/n|caballo/caballos/m|cavall/cavalls/m|马/匹
cow|a|cow/cows|vache/vaches/f|Kuh/Kühe/f|vaca/vacas/f|vaca/vaques/f|牛/头
fish|a f p|fish/fish|poisson/poissons/m|Fisch/Fische/m|pez/peces/m|peix/peixos/m|鱼/条
book|r s o p l g|book/books|livre/livres/m|Buch/Bücher/n|libro/libros/m|llibre/llibres/m|书/本
letter|r s o p l|letter/letters|lettre/lettres/f|Brief/Briefe/m|carta/cartas/f|carta/cartes/f|信/封
newspaper|r p l g|newspaper/newspapers|journal/journaux/m|Zeitung/Zeitungen/f|periódico/periódicos/m|diari/diaris/m|报纸/份
map|r p l g|map/maps|carte/cartes/f|Karte/Karten/f|mapa/mapas/m|mapa/mapes/m|地图/张
apple|f p w x g|apple/apples|pomme/pommes/f|Apfel/Äpfel/m|manzana/manzanas/f|poma/pomes/f|苹果/个
cake|f g|cake/cakes|gâteau/gâteaux/m|Kuchen/Kuchen/m|pastel/pasteles/m|pastís/pastissos/m|蛋糕/块
egg|f p b x g|egg/eggs|œuf/œufs/m|Ei/Eier/n|huevo/huevos/m|ou/ous/m|鸡蛋/个
orange|f p x g|orange/oranges|orange/oranges/f|Orange/Orangen/f|naranja/naranjas/f|taronja/taronges/f|橙子/个
banana|f p g|banana/bananas|banane/bananes/f|Banane/Bananen/f|plátano/plátanos/m|plàtan/plàtans/m|香蕉/根
sandwich|f p g|sandwich/sandwiches|sandwich/sandwichs/m|Brötchen/Brötchen/n|bocadillo/bocadillos/m|entrepà/entrepans/m|三明治/个
car|w c t g|car/cars|voiture/voitures/f|Auto/Autos/n|coche/coches/m|cotxe/cotxes/m|汽车/辆
bicycle|w c t g l|bicycle/bicycles|vélo/vélos/m|Fahrrad/Fahrräder/n|bicicleta/bicicletas/f|bicicleta/bicicletes/f|自行车/辆
boat|c t g|boat/boats|bateau/bateaux/m|Boot/Boote/n|barco/barcos/m|vaixell/vaixells/m|船/条
house|c t g|house/houses|maison/maisons/f|Haus/Häuser/n|casa/casas/f|casa/cases/f|房子/座
table|c t g|table/tables|table/tables/f|Tisch/Tische/m|mesa/mesas/f|taula/taules/f|桌子/张
chair|c t b p g|chair/chairs|chaise/chaises/f|Stuhl/Stühle/m|silla/sillas/f|cadira/cadires/f|椅子/把
door|o c t|door/doors|porte/portes/f|Tür/Türen/f|puerta/puertas/f|porta/portes/f|门/扇
window|o c b|window/windows|fenêtre/fenêtres/f|Fenster/Fenster/n|ventana/ventanas/f|finestra/finestres/f|窗户/扇
cup|w c b p g|cup/cups|tasse/tasses/f|Tasse/Tassen/f|taza/tazas/f|tassa/tasses/f|杯子/个
bottle|o b p g|bottle/bottles|bouteille/bouteilles/f|Flasche/Flaschen/f|botella/botellas/f|ampolla/ampolles/f|瓶子/个
glass|w c b p g|glass/glasses|verre/verres/m|Glas/Gläser/n|vaso/vasos/m|got/gots/m|玻璃杯/个
flower|p g|flower/flowers|fleur/fleurs/f|Blume/Blumen/f|flor/flores/f|flor/flors/f|花/朵
key|p l x|key/keys|clé/clés/f|Schlüssel/Schlüssel/m|llave/llaves/f|clau/claus/f|钥匙/把
box|o p t g|box/boxes|boîte/boîtes/f|Kiste/Kisten/f|caja/cajas/f|capsa/capses/f|盒子/个
bag|o p l g|bag/bags|sac/sacs/m|Tasche/Taschen/f|bolso/bolsos/m|bossa/bosses/f|包/个
picture|p g|picture/pictures|tableau/tableaux/m|Bild/Bilder/n|cuadro/cuadros/m|quadre/quadres/m|画/幅
hat|p l x g w|hat/hats|chapeau/chapeaux/m|Hut/Hüte/m|sombrero/sombreros/m|barret/barrets/m|帽子/顶
ball|p l x g|ball/balls|ballon/ballons/m|Ball/Bälle/m|pelota/pelotas/f|pilota/pilotes/f|球/个
shirt|p w g|shirt/shirts|chemise/chemises/f|Hemd/Hemden/n|camisa/camisas/f|camisa/camises/f|衬衫/件
pen|p l b x g|pen/pens|stylo/stylos/m|Stift/Stifte/m|bolígrafo/bolígrafos/m|bolígraf/bolígrafs/m|笔/支
umbrella|p l b g|umbrella/umbrellas|parapluie/parapluies/m|Regenschirm/Regenschirme/m|paraguas/paraguas/m|paraigua/paraigües/m|雨伞/把
lamp|b c g|lamp/lamps|lampe/lampes/f|Lampe/Lampen/f|lámpara/lámparas/f|làmpada/làmpades/f|灯/盏
"""

# Adjectives: key|applies-to tags (* = any, -h = any but human)|en|fr "ms fs mp fp [ms-before-vowel]" with a
# leading "<" when pre-nominal|de stem|es "ms fs mp fp"|ca "ms fs mp fp"|zh (attributive form).
_ADJ_TABLE = """
red|-h|red|rouge rouge rouges rouges|rot|rojo roja rojos rojas|vermell vermella vermells vermelles|红色的
blue|-h|blue|bleu bleue bleus bleues|blau|azul azul azules azules|blau blava blaus blaves|蓝色的
green|-h|green|vert verte verts vertes|grün|verde verde verdes verdes|verd verda verds verdes|绿色的
white|-h|white|blanc blanche blancs blanches|weiß|blanco blanca blancos blancas|blanc blanca blancs blanques|白色的
black|-h|black|noir noire noirs noires|schwarz|negro negra negros negras|negre negra negres negres|黑色的
yellow|-h|yellow|jaune jaune jaunes jaunes|gelb|amarillo amarilla amarillos amarillas|groc groga grocs grogues|黄色的
big|*|big|<grand grande grands grandes|groß|grande grande grandes grandes|gran gran grans grans|大
small|*|small|<petit petite petits petites|klein|pequeño pequeña pequeños pequeñas|petit petita petits petites|小
new|g|new|<nouveau nouvelle nouveaux nouvelles nouvel|neu|nuevo nueva nuevos nuevas|nou nova nous noves|新
old|*|old|<vieux vieille vieux vieilles vieil|alt|viejo vieja viejos viejas|vell vella vells velles|旧
beautiful|*|beautiful|<beau belle beaux belles bel|schön|bonito bonita bonitos bonitas|bonic bonica bonics boniques|漂亮的
expensive|g|expensive|cher chère chers chères|teur|caro cara caros caras|car cara cars cares|很贵的
heavy|t|heavy|lourd lourde lourds lourdes|schwer|pesado pesada pesados pesadas|pesant pesant pesants pesants|很重的
young|h a|young|<jeune jeune jeunes jeunes|jung|joven joven jóvenes jóvenes|jove jove joves joves|年轻的
happy|h a|happy|content contente contents contentes|fröhlich|contento contenta contentos contentas|content contenta contents contentes|快乐的
tired|h a|tired|fatigué fatiguée fatigués fatiguées|müd|cansado cansada cansados cansadas|cansat cansada cansats cansades|很累的
"""

# Verbs: key|subject tags|object tags|en "base 3sg past"|fr "1sg 3sg 1pl 3pl, participle,
# future stem"|de "1sg 3sg 1pl 3pl, participle, infinitive"|es "present x4, preterite x4,
# future stem"|ca "present x4, infinitive, future stem"|zh.
_VERB_TABLE = """
buy|h|g|buy buys bought|achète achète achetons achètent,acheté,achèter|kaufe kauft kaufen kaufen,gekauft,kaufen|compro compra compramos compran,compré compró compramos compraron,comprar|compro compra comprem compren,comprar,comprar|买
sell|h|g|sell sells sold|vends vend vendons vendent,vendu,vendr|verkaufe verkauft verkaufen verkaufen,verkauft,verkaufen|vendo vende vendemos venden,vendí vendió vendimos vendieron,vender|venc ven venem venen,vendre,vendr|卖
see|h a|*|see sees saw|vois voit voyons voient,vu,verr|sehe sieht sehen sehen,gesehen,sehen|veo ve vemos ven,vi vio vimos vieron,ver|veig veu veiem veuen,veure,veur|看见
eat|h a|f|eat eats ate|mange mange mangeons mangent,mangé,manger|esse isst essen essen,gegessen,essen|como come comemos comen,comí comió comimos comieron,comer|menjo menja mengem mengen,menjar,menjar|吃
read|h|r|read reads read|lis lit lisons lisent,lu,lir|lese liest lesen lesen,gelesen,lesen|leo lee leemos leen,leí leyó leímos leyeron,leer|llegeixo llegeix llegim llegeixen,llegir,llegir|读
write|h|s|write writes wrote|écris écrit écrivons écrivent,écrit,écrir|schreibe schreibt schreiben schreiben,geschrieben,schreiben|escribo escribe escribimos escriben,escribí escribió escribimos escribieron,escribir|escric escriu escrivim escriuen,escriure,escriur|写
open|h|o|open opens opened|ouvre ouvre ouvrons ouvrent,ouvert,ouvrir|öffne öffnet öffnen öffnen,geöffnet,öffnen|abro abre abrimos abren,abrí abrió abrimos abrieron,abrir|obro obre obrim obren,obrir,obrir|打开
close|h|o|close closes closed|ferme ferme fermons ferment,fermé,fermer|schließe schließt schließen schließen,geschlossen,schließen|cierro cierra cerramos cierran,cerré cerró cerramos cerraron,cerrar|tanco tanca tanquem tanquen,tancar,tancar|关上
find|h a|*|find finds found|trouve trouve trouvons trouvent,trouvé,trouver|finde findet finden finden,gefunden,finden|encuentro encuentra encontramos encuentran,encontré encontró encontramos encontraron,encontrar|trobo troba trobem troben,trobar,trobar|找到
carry|h|p|carry carries carried|porte porte portons portent,porté,porter|trage trägt tragen tragen,getragen,tragen|llevo lleva llevamos llevan,llevé llevó llevamos llevaron,llevar|porto porta portem porten,portar,portar|搬
paint|h|t|paint paints painted|peins peint peignons peignent,peint,peindr|streiche streicht streichen streichen,gestrichen,streichen|pinto pinta pintamos pintan,pinté pintó pintamos pintaron,pintar|pinto pinta pintem pinten,pintar,pintar|刷
draw|h|*|draw draws drew|dessine dessine dessinons dessinent,dessiné,dessiner|zeichne zeichnet zeichnen zeichnen,gezeichnet,zeichnen|dibujo dibuja dibujamos dibujan,dibujé dibujó dibujamos dibujaron,dibujar|dibuixo dibuixa dibuixem dibuixen,dibuixar,dibuixar|画
clean|h|c|clean cleans cleaned|nettoie nettoie nettoyons nettoient,nettoyé,nettoier|putze putzt putzen putzen,geputzt,putzen|limpio limpia limpiamos limpian,limpié limpió limpiamos limpiaron,limpiar|netejo neteja netegem netegen,netejar,netejar|打扫
wash|h|w|wash washes washed|lave lave lavons lavent,lavé,laver|wasche wäscht waschen waschen,gewaschen,waschen|lavo lava lavamos lavan,lavé lavó lavamos lavaron,lavar|rento renta rentem renten,rentar,rentar|洗
break|h a|b|break breaks broke|casse casse cassons cassent,cassé,casser|zerbreche zerbricht zerbrechen zerbrechen,zerbrochen,zerbrechen|rompo rompe rompemos rompen,rompí rompió rompimos rompieron,romper|trenco trenca trenquem trenquen,trencar,trencar|打破
lose|h|l|lose loses lost|perds perd perdons perdent,perdu,perdr|verliere verliert verlieren verlieren,verloren,verlieren|pierdo pierde perdemos pierden,perdí perdió perdimos perdieron,perder|perdo perd perdem perden,perdre,perdr|丢
build|h|t|build builds built|construis construit construisons construisent,construit,construir|baue baut bauen bauen,gebaut,bauen|construyo construye construimos construyen,construí construyó construimos construyeron,construir|construeixo construeix construïm construeixen,construir,construir|造
want|h a|g|want wants wanted|veux veut voulons veulent,voulu,voudr|will will wollen wollen,gewollt,wollen|quiero quiere queremos quieren,quise quiso quisimos quisieron,querr|vull vol volem volen,voler,voldr|想要
throw|h|x|throw throws threw|lance lance lançons lancent,lancé,lancer|werfe wirft werfen werfen,geworfen,werfen|lanzo lanza lanzamos lanzan,lancé lanzó lanzamos lanzaron,lanzar|llanço llança llancem llancen,llançar,llançar|扔
take|h|p|take takes took|prends prend prenons prennent,pris,prendr|nehme nimmt nehmen nehmen,genommen,nehmen|tomo toma tomamos toman,tomé tomó tomamos tomaron,tomar|agafo agafa agafem agafen,agafar,agafar|拿
bring|h|p|bring brings brought|apporte apporte apportons apportent,apporté,apporter|bringe bringt bringen bringen,gebracht,bringen|traigo trae traemos traen,traje trajo trajimos trajeron,traer|porto porta portem porten,portar,portar|带来
"""

# Places: fixed prepositional phrases (their internal agreement is lexicalised).
_PLACE_TABLE = """
garden|in the garden|dans le jardin|im Garten|en el jardín|al jardí|在花园里
park|in the park|dans le parc|im Park|en el parque|al parc|在公园里
home|at home|à la maison|zu Hause|en casa|a casa|在家里
kitchen|in the kitchen|dans la cuisine|in der Küche|en la cocina|a la cuina|在厨房里
school|at school|à l'école|in der Schule|en la escuela|a l'escola|在学校
market|at the market|au marché|auf dem Markt|en el mercado|al mercat|在市场上
station|at the station|à la gare|am Bahnhof|en la estación|a l'estació|在车站
street|in the street|dans la rue|auf der Straße|en la calle|al carrer|在街上
beach|on the beach|sur la plage|am Strand|en la playa|a la platja|在海滩上
office|at the office|au bureau|im Büro|en la oficina|a l'oficina|在办公室里
library|in the library|à la bibliothèque|in der Bibliothek|en la biblioteca|a la biblioteca|在图书馆里
village|in the village|au village|im Dorf|en el pueblo|al poble|在村子里
"""

# Time adverbials with the tenses they are compatible with.
_TIME_TABLE = """
today|pres past fut|today|aujourd'hui|heute|hoy|avui|今天
yesterday|past|yesterday|hier|gestern|ayer|ahir|昨天
tomorrow|fut|tomorrow|demain|morgen|mañana|demà|明天
everyday|pres|every day|chaque jour|jeden Tag|cada día|cada dia|每天
everymorning|pres|every morning|chaque matin|jeden Morgen|cada mañana|cada matí|每天早上
lastweek|past|last week|la semaine dernière|letzte Woche|la semana pasada|la setmana passada|上个星期
nextweek|fut|next week|la semaine prochaine|nächste Woche|la semana que viene|la setmana que ve|下个星期
thismorning|past fut|this morning|ce matin|heute Morgen|esta mañana|aquest matí|今天早上
evening|pres|in the evening|le soir|am Abend|por la noche|al vespre|晚上
now|pres|now|maintenant|jetzt|ahora|ara|现在
lastnight|past|last night|hier soir|gestern Abend|anoche|ahir a la nit|昨天晚上
monday|pres past fut|on Monday|lundi|am Montag|el lunes|dilluns|星期一
tuesday|pres past fut|on Tuesday|mardi|am Dienstag|el martes|dimarts|星期二
wednesday|pres past fut|on Wednesday|mercredi|am Mittwoch|el miércoles|dimecres|星期三
thursday|pres past fut|on Thursday|jeudi|am Donnerstag|el jueves|dijous|星期四
friday|pres past fut|on Friday|vendredi|am Freitag|el viernes|divendres|星期五
saturday|pres past fut|on Saturday|samedi|am Samstag|el sábado|dissabte|星期六
sunday|pres past fut|on Sunday|dimanche|am Sonntag|el domingo|diumenge|星期天
"""

# Reporting clauses for subordinate sentences ("I think that ...").
_MATRIX = {
    "think": {"en": "I think that", "fr": "je pense que", "de": "ich glaube, dass", "es": "creo que",
              "ca": "crec que", "zh": "我觉得"},
    "says": {"en": "she says that", "fr": "elle dit que", "de": "sie sagt, dass", "es": "dice que",
             "ca": "diu que", "zh": "她说"},
    "know": {"en": "we know that", "fr": "nous savons que", "de": "wir wissen, dass",
             "es": "sabemos que", "ca": "sabem que", "zh": "我们知道"},
}
# Only verbs that take the indicative in every language (es/ca "esperar que" would need the
# subjunctive, which the grammar does not inflect).
_MATRIX_INDICATIVE = ("think", "says", "know")

_NUMBERS = {
    "en": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen twenty",
    "fr": "un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze "
          "seize dix-sept dix-huit dix-neuf vingt",
    "de": "ein zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn "
          "fünfzehn sechzehn siebzehn achtzehn neunzehn zwanzig",
    "es": "un dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
          "dieciséis diecisiete dieciocho diecinueve veinte",
    "ca": "un dos tres quatre cinc sis set vuit nou deu onze dotze tretze catorze quinze setze "
          "disset divuit dinou vint",
    "zh": "一 二 三 四 五 六 七 八 九 十 十一 十二 十三 十四 十五 十六 十七 十八 十九 二十",
}

_PRONOUN_FORMS = {
    "en": {"1sg": "I", "1pl": "we", "3sg_m": "he", "3sg_f": "she", "3pl_m": "they", "3pl_f": "they"},
    "fr": {"1sg": "je", "1pl": "nous", "3sg_m": "il", "3sg_f": "elle", "3pl_m": "ils", "3pl_f": "elles"},
    "de": {"1sg": "ich", "1pl": "wir", "3sg_m": "er", "3sg_f": "sie", "3pl_m": "sie", "3pl_f": "sie"},
    "zh": {"1sg": "我", "1pl": "我们", "3sg_m": "他", "3sg_f": "她", "3pl_m": "他们", "3pl_f": "她们"},
}
# Person/number slot of the 4-form conjugation tables: 1sg, 3sg, 1pl, 3pl.
_PERSON_SLOT = {"1sg": 0, "3sg": 1, "1pl": 2, "3pl": 3}

_VOWELS = set("aeiouyàâäéèêëîïôöùûüœæhAEIOUYÀÂÉÈÊÎÔÛŒHÆ")


def _parse_rows(table: str) -> list[list[str]]:
    return [line.split("|") for line in table.strip().splitlines()]


def _build_lexicon() -> dict:
    nouns = {}
    for key, tags, en, fr, de, es, ca, zh in _parse_rows(_NOUN_TABLE):
        entry = {"tags": frozenset(tags.split()), "en": tuple(en.split("/")), "zh": tuple(zh.split("/"))}
        for lang, spec in (("fr", fr), ("de", de), ("es", es), ("ca", ca)):
            sg, pl, g = spec.split("/")
            entry[lang] = (sg, pl, g)
        nouns[key] = entry
    adjs = {}
    for key, applies, en, fr, de, es, ca, zh in _parse_rows(_ADJ_TABLE):
        pre = fr.startswith("<")
        fr_forms = fr.lstrip("<").split()
        if len(fr_forms) == 4:
            fr_forms.append(fr_forms[0])
        adjs[key] = {"applies": frozenset(applies.split()), "en": en, "fr": tuple(fr_forms),
                     "fr_pre": pre, "de": de, "es": tuple(es.split()), "ca": tuple(ca.split()),
                     "zh": zh}
    verbs = {}
    for key, subj, obj, en, fr, de, es, ca, zh in _parse_rows(_VERB_TABLE):
        entry = {"subj": frozenset(subj.split()), "obj": frozenset(obj.split()),
                 "en": tuple(en.split()), "zh": zh}
        for lang, spec in (("fr", fr), ("de", de), ("es", es), ("ca", ca)):
            pres, a, b = spec.split(",")
            entry[lang] = (tuple(pres.split()), tuple(a.split()) if lang == "es" else a, b)
        verbs[key] = entry
    places = {row[0]: dict(zip(LANGS, row[1:])) for row in _parse_rows(_PLACE_TABLE)}
    times = {row[0]: {"tenses": frozenset(row[1].split()), **dict(zip(LANGS, row[2:]))}
             for row in _parse_rows(_TIME_TABLE)}
    return {"nouns": nouns, "adjs": adjs, "verbs": verbs, "places": places, "times": times}


LEXICON = _build_lexicon()


def lexicon_size(lang: str) -> int:
    """Number of distinct lemmas (content and function words of the tables) for ``lang``."""
    lex = LEXICON
    return (len(lex["nouns"]) + len(lex["adjs"]) + len(lex["verbs"]) + len(lex["places"])
            + len(lex["times"]) + len(_MATRIX) + 20 + len(_PRONOUN_FORMS.get(lang, _PRONOUN_FORMS["en"])))


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class NP:
    """A noun phrase: a pronoun, or a noun with determiner ("def", "indef", "num"), plurality,
    an optional adjective and, for "num", the count (2..20)."""

    noun: str | None = None
    pronoun: str | None = None
    det: str = "def"
    plural: bool = False
    count: int = 1
    adj: str | None = None

    @property
    def person(self) -> str:
        """Agreement slot of the verb: 1sg, 3sg, 1pl or 3pl."""
        if self.pronoun is not None:
            return self.pronoun.split("_")[0]
        return "3pl" if self.plural else "3sg"


@dataclass(frozen=True)
class Frame:
    """One meaning, rendered identically in every language by :func:`render`."""

    subj: NP
    verb: str
    obj: NP
    tense: str = "pres"
    mood: str = "decl"
    matrix: str | None = None
    place: str | None = None
    time: str | None = None
    clock: int | None = None
    front_time: bool = False


def _adj_applies(applies: frozenset[str], tags: frozenset[str]) -> bool:
    """"*" = any noun, "-x" = any noun without tag x, otherwise a noun sharing one tag."""
    if "*" in applies:
        return True
    neg = {a[1:] for a in applies if a.startswith("-")}
    if neg:
        return not (neg & tags)
    return bool(applies & tags)


def _sample_np(rng: random.Random, tags: frozenset[str] | None, allow_pronoun: bool) -> NP:
    lex = LEXICON
    if allow_pronoun and rng.random() < 0.22:
        return NP(pronoun=rng.choice(PRONOUNS))
    pool = sorted(k for k, v in lex["nouns"].items() if tags is None or "*" in tags or v["tags"] & tags)
    noun = rng.choice(pool)
    ntags = lex["nouns"][noun]["tags"]
    r = rng.random()
    if r < 0.35:
        det, plural, count = "def", False, 1
    elif r < 0.55:
        det, plural, count = "def", True, 1
    elif r < 0.78:
        det, plural, count = "indef", False, 1
    else:
        count = 2 + min(int(rng.expovariate(0.25)), 18)
        det, plural = "num", True
    adj = None
    if rng.random() < 0.4:
        adjs = sorted(k for k, v in lex["adjs"].items() if _adj_applies(v["applies"], ntags))
        adj = rng.choice(adjs)
    return NP(noun=noun, det=det, plural=plural, count=count, adj=adj)


def sample_frame(rng: random.Random) -> Frame:
    """Draw one random, semantically coherent frame (verb-subject-object selection respected)."""
    lex = LEXICON
    verb = rng.choice(sorted(lex["verbs"]))
    v = lex["verbs"][verb]
    while True:
        subj = _sample_np(rng, None, allow_pronoun=True)
        if subj.pronoun is not None or lex["nouns"][subj.noun]["tags"] & v["subj"]:
            break
    while True:
        obj = _sample_np(rng, v["obj"], allow_pronoun=False)
        if obj.noun != subj.noun:
            break
    tense = rng.choice(TENSES)
    r = rng.random()
    mood = "decl" if r < 0.6 else "ques" if r < 0.8 else "sub"
    matrix = rng.choice(_MATRIX_INDICATIVE) if mood == "sub" else None
    place = rng.choice(sorted(lex["places"])) if rng.random() < 0.3 else None
    time = clock = None
    r = rng.random()
    if r < 0.4:
        time = rng.choice(sorted(k for k, t in lex["times"].items() if tense in t["tenses"]))
    elif r < 0.5:
        clock = rng.randint(1, 12)
    front = mood == "decl" and (time is not None or clock is not None) and rng.random() < 0.4
    return Frame(subj=subj, verb=verb, obj=obj, tense=tense, mood=mood, matrix=matrix,
                 place=place, time=time, clock=clock, front_time=front)


def sample_frames(n: int, seed: int) -> list[Frame]:
    """``n`` frames drawn from a generator seeded with ``seed`` (deterministic)."""
    rng = random.Random(f"frames-{seed}")
    return [sample_frame(rng) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# Rendering helpers


def _join(words: list[str]) -> str:
    """Join words with spaces, gluing elided forms (ending in an apostrophe) to the next word."""
    out = ""
    for w in words:
        if not w:
            continue
        if not out or out.endswith("'"):
            out += w
        else:
            out += " " + w
    return out


def _elide(word: str, nxt: str) -> str:
    """French/Catalan elision of a clitic before a vowel or mute h (le -> l', que -> qu')."""
    if nxt and nxt[0] in _VOWELS and nxt not in ("huit", "onze"):
        return word[:-1] + "'"
    return word


def _capitalize(s: str) -> str:
    for i, ch in enumerate(s):
        if ch.isalpha():
            return s[:i] + ch.upper() + s[i + 1:]
    return s


def _number(lang: str, n: int, gender: str = "m") -> str:
    word = _NUMBERS[lang].split()[n - 1]
    if n == 1 and gender == "f" and lang in ("fr", "es", "ca"):
        return "une" if lang == "fr" else "una"
    if n == 2 and gender == "f" and lang == "ca":
        return "dues"
    return word


def _clock(lang: str, n: int) -> str:
    if lang == "en":
        return f"at {_number('en', n)} o'clock"
    if lang == "fr":
        return f"à {_number('fr', n, 'f')} heure" + ("s" if n > 1 else "")
    if lang == "de":
        return f"um {_number('de', n)} Uhr"
    if lang == "es":
        return "a la una" if n == 1 else f"a las {_number('es', n)}"
    if lang == "ca":
        return "a la una" if n == 1 else f"a les {_number('ca', n, 'f')}"
    return ("两" if n == 2 else _number("zh", n)) + "点"


def _adverbials(frame: Frame, lang: str) -> tuple[str, str]:
    """(time phrase, place phrase), either possibly empty."""
    lex = LEXICON
    t = lex["times"][frame.time][lang] if frame.time else _clock(lang, frame.clock) if frame.clock else ""
    p = lex["places"][frame.place][lang] if frame.place else ""
    return t, p


# --- English ------------------------------------------------------------------------------


def _np_en(np_: NP, subject: bool) -> list[str]:
    if np_.pronoun is not None:
        w = _PRONOUN_FORMS["en"][np_.pronoun]
        if not subject:
            w = {"I": "me", "we": "us", "he": "him", "she": "her", "they": "them"}[w]
        return [w]
    sg, pl = LEXICON["nouns"][np_.noun]["en"]
    words = [LEXICON["adjs"][np_.adj]["en"]] if np_.adj else []
    words.append(pl if np_.plural else sg)
    if np_.det == "def":
        return ["the"] + words
    if np_.det == "indef":
        return ["an" if words[0][0] in "aeiou" else "a"] + words
    return [_number("en", np_.count)] + words


def _render_en(f: Frame) -> str:
    v = LEXICON["verbs"][f.verb]["en"]
    subj, obj = _np_en(f.subj, True), _np_en(f.obj, False)
    t, p = _adverbials(f, "en")
    third_sg = f.subj.person == "3sg"
    tail = obj + [p] + ([t] if not f.front_time else [])
    if f.mood == "ques":
        aux = {"pres": "does" if third_sg else "do", "past": "did", "fut": "will"}[f.tense]
        return _capitalize(_join([aux] + subj + [v[0]] + tail)) + "?"
    verb = {"pres": v[1] if third_sg else v[0], "past": v[2], "fut": "will " + v[0]}[f.tense]
    clause = subj + [verb] + tail
    if f.mood == "sub":
        clause = [_MATRIX[f.matrix]["en"]] + clause
    elif f.front_time:
        clause = [t + ","] + clause
    return _capitalize(_join(clause)) + "."


# --- French -------------------------------------------------------------------------------


def _np_fr(np_: NP) -> list[str]:
    if np_.pronoun is not None:
        return [_PRONOUN_FORMS["fr"][np_.pronoun]]
    sg, pl, g = LEXICON["nouns"][np_.noun]["fr"]
    noun = pl if np_.plural else sg
    pre, post = [], []
    if np_.adj:
        a = LEXICON["adjs"][np_.adj]
        ms, fs, mp, fp, ms_v = a["fr"]
        if a["fr_pre"]:
            form = (mp if g == "m" else fp) if np_.plural else (fs if g == "f" else ms_v if noun[0] in _VOWELS else ms)
            pre.append(form)
        else:
            post.append((mp if g == "m" else fp) if np_.plural else (ms if g == "m" else fs))
    head = pre + [noun] + post
    if np_.det == "def":
        if np_.plural:
            return ["les"] + head
        return [_elide("le" if g == "m" else "la", head[0])] + head
    if np_.det == "indef":
        return ["un" if g == "m" else "une"] + head
    return [_number("fr", np_.count, g)] + head


def _render_fr(f: Frame) -> str:
    pres, part, fut = LEXICON["verbs"][f.verb]["fr"]
    slot = _PERSON_SLOT[f.subj.person]
    subj, obj = _np_fr(f.subj), _np_fr(f.obj)
    if f.tense == "pres":
        vp = [pres[slot]]
    elif f.tense == "past":
        vp = [("ai", "a", "avons", "ont")[slot], part]
    else:
        vp = [fut + ("ai", "a", "ons", "ont")[slot]]
    if subj == ["je"]:
        subj = [_elide("je", vp[0])]
    t, p = _adverbials(f, "fr")
    clause = subj + vp + obj + [p] + ([t] if not f.front_time else [])
    if f.mood == "ques":
        return _capitalize(_join([_elide("est-ce que", clause[0])] + clause)) + " ?"
    if f.mood == "sub":
        clause = _MATRIX[f.matrix]["fr"].split() + clause
        i = len(_MATRIX[f.matrix]["fr"].split()) - 1
        clause[i] = _elide(clause[i], clause[i + 1])
    elif f.front_time:
        clause = [t + ","] + clause
    return _capitalize(_join(clause)) + "."


# --- German -------------------------------------------------------------------------------

_DE_DEF = {"nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
           "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"}}
_DE_INDEF = {"nom": {"m": "ein", "f": "eine", "n": "ein"}, "acc": {"m": "einen", "f": "eine", "n": "ein"}}


def _de_adj_ending(det: str, case: str, g: str, plural: bool) -> str:
    """Attributive adjective ending: weak after der/die/das, mixed after ein, strong with no article."""
    if det == "def":
        if plural:
            return "en"
        return "en" if (case == "acc" and g == "m") else "e"
    if det == "indef":
        if case == "acc" and g == "m":
            return "en"
        return {"m": "er", "f": "e", "n": "es"}[g]
    return "e"  # bare plural after a numeral: strong nominative/accusative plural


def _np_de(np_: NP, case: str) -> list[str]:
    if np_.pronoun is not None:
        w = _PRONOUN_FORMS["de"][np_.pronoun]
        if case == "acc":
            w = {"ich": "mich", "wir": "uns", "er": "ihn", "sie": "sie"}[w]
        return [w]
    sg, pl, g = LEXICON["nouns"][np_.noun]["de"]
    words = []
    if np_.adj:
        words.append(LEXICON["adjs"][np_.adj]["de"] + _de_adj_ending(np_.det, case, g, np_.plural))
    words.append(pl if np_.plural else sg)
    if np_.det == "def":
        return [_DE_DEF[case]["pl" if np_.plural else g]] + words
    if np_.det == "indef":
        return [_DE_INDEF[case][g]] + words
    return [_number("de", np_.count)] + words


def _render_de(f: Frame) -> str:
    pres, part, inf = LEXICON["verbs"][f.verb]["de"]
    slot = _PERSON_SLOT[f.subj.person]
    subj, obj = _np_de(f.subj, "nom"), _np_de(f.obj, "acc")
    if f.tense == "pres":
        finite, final = pres[slot], []
    elif f.tense == "past":
        finite, final = ("habe", "hat", "haben", "haben")[slot], [part]
    else:
        finite, final = ("werde", "wird", "werden", "werden")[slot], [inf]
    t, p = _adverbials(f, "de")
    middle = ([t] if not f.front_time else []) + [p] + obj
    if f.mood == "ques":
        return _capitalize(_join([finite] + subj + middle + final)) + "?"
    if f.mood == "sub":  # verb-final: participle/infinitive before the finite verb
        clause = [_MATRIX[f.matrix]["de"]] + subj + middle + final + [finite]
    elif f.front_time:  # verb-second: the fronted adverbial takes the first position
        clause = [t, finite] + subj + middle + final
    else:
        clause = subj + [finite] + middle + final
    return _capitalize(_join(clause)) + "."


# --- Spanish and Catalan ------------------------------------------------------------------


def _np_iberian(np_: NP, lang: str) -> list[str]:
    sg, pl, g = LEXICON["nouns"][np_.noun][lang]
    noun = pl if np_.plural else sg
    words = [noun]
    if np_.adj:
        ms, fs, mp, fp = LEXICON["adjs"][np_.adj][lang]
        words.append((mp if g == "m" else fp) if np_.plural else (ms if g == "m" else fs))
    if np_.det == "def":
        if lang == "es":
            art = {("m", False): "el", ("f", False): "la", ("m", True): "los", ("f", True): "las"}[(g, np_.plural)]
        else:
            art = {("m", False): "el", ("f", False): "la", ("m", True): "els", ("f", True): "les"}[(g, np_.plural)]
            if not np_.plural and words[0][0] in _VOWELS:
                art = "l'"
        return [art] + words
    if np_.det == "indef":
        return ["un" if g == "m" else "una"] + words
    return [_number(lang, np_.count, g)] + words


_ES_FUT_END = ("é", "á", "emos", "án")
_CA_PAST_AUX = ("vaig", "va", "vam", "van")
_CA_FUT_END = ("é", "à", "em", "an")


def _render_iberian(f: Frame, lang: str) -> str:
    pres, past, fut = LEXICON["verbs"][f.verb][lang]
    slot = _PERSON_SLOT[f.subj.person]
    if f.tense == "pres":
        vp = [pres[slot]]
    elif lang == "es":
        vp = [past[slot]] if f.tense == "past" else [fut + _ES_FUT_END[slot]]  # preterite
    else:
        vp = [_CA_PAST_AUX[slot], past] if f.tense == "past" else [fut + _CA_FUT_END[slot]]
    subj = [] if f.subj.pronoun is not None else _np_iberian(f.subj, lang)  # pro-drop
    obj = _np_iberian(f.obj, lang)
    t, p = _adverbials(f, lang)
    clause = subj + vp + obj + [p] + ([t] if not f.front_time else [])
    if f.mood == "ques":
        s = _capitalize(_join(clause))
        return f"¿{s}?" if lang == "es" else s + "?"
    if f.mood == "sub":
        clause = [_MATRIX[f.matrix][lang]] + clause
    elif f.front_time:
        clause = [t + ","] + clause
    return _capitalize(_join(clause)) + "."


# --- Chinese ------------------------------------------------------------------------------


def _np_zh(np_: NP) -> str:
    if np_.pronoun is not None:
        return _PRONOUN_FORMS["zh"][np_.pronoun]
    word, mw = LEXICON["nouns"][np_.noun]["zh"]
    adj = LEXICON["adjs"][np_.adj]["zh"] if np_.adj else ""
    if np_.adj == "old" and LEXICON["nouns"][np_.noun]["tags"] & {"h", "a"}:
        adj = "老"  # 老 for the animate, 旧 for things
    if np_.det == "def":
        return ("那些" if np_.plural else "那" + mw) + adj + word
    if np_.det == "indef":
        return "一" + mw + adj + word
    num = "两" if np_.count == 2 else _number("zh", np_.count)
    return num + mw + adj + word


def _render_zh(f: Frame) -> str:
    verb = LEXICON["verbs"][f.verb]["zh"]
    subj, obj = _np_zh(f.subj), _np_zh(f.obj)
    t, p = _adverbials(f, "zh")
    # Word order: (time) subject (time) [会] (在 place) verb[了] object; no inflection.
    aux = "会" if f.tense == "fut" else ""
    vp = verb + ("了" if f.tense == "past" else "")
    body = (t + subj if f.front_time else subj + t) + aux + p + vp + obj
    if f.mood == "ques":
        return body + "吗？"
    if f.mood == "sub":
        body = _MATRIX[f.matrix]["zh"] + body
    return body + "。"


def render(frame: Frame, lang: str) -> str:
    """The sentence for ``frame`` in ``lang`` (one of LANGS), cased and punctuated."""
    if lang == "en":
        return _render_en(frame)
    if lang == "fr":
        return _render_fr(frame)
    if lang == "de":
        return _render_de(frame)
    if lang in ("es", "ca"):
        return _render_iberian(frame, lang)
    if lang == "zh":
        return _render_zh(frame)
    raise ValueError(f"unknown language {lang!r}; expected one of {' '.join(LANGS)}")


def generate_sentences(frames: list[Frame], langs: tuple[str, ...] | list[str] = LANGS) -> dict[str, list[str]]:
    """Render every frame in every language: ``out[lang][i]`` is frame i in ``lang``, so
    ``out["fr"][i]`` and ``out["en"][i]`` are a source sentence and its translation."""
    return {lang: [render(f, lang) for f in frames] for lang in langs}
