"""Facts about the real iNat 2021 taxonomy that the synthetic replica is built on (data only).

Sources (see also ``inat_hf/data/NOTICE``):

* the class of every category id: the real class boundaries of the official ``train.json`` categories
  (read from lmb-freiburg/entitynet ``inat2021_categories.json`` @ ef256e9, MIT licence, which copies them
  from the official file) and checked against the genus sequence of ``inat2021_species.csv``;
* ``ORDER_PINS`` and ``FAMILY_PINS``: real orders and families with their real extents, given by the first
  (and last) genus of the taxon inside its class. They come from the same category list where it was read,
  and otherwise from the genus sequence: ids are sorted by ``Kingdom_Phylum_Class_Order_Family_Genus_epithet``,
  so every alphabetical descent of the genus sequence is a family (or higher) boundary, and a run of genera
  that covers the alphabet and belongs to one well-known family is that family. Taxa not listed here are
  synthesised by :mod:`inat_hf.replica.taxonomy`;
* ``FIRST40_COMMON_NAMES`` / ``ANCHOR_COMMON_NAMES``: the ``common_name`` of real category records
  (``tests/data/inat2021_categories_sample_first40.jsonl``, from lmb-freiburg/entitynet @ ef256e9, and the
  TFDS dummy files ``tests/data/tfds_dummy/``; sources and licences in ``tests/data/NOTICE``).
"""

from __future__ import annotations

# (first category id, kingdom, phylum, class); a class runs up to the next class's first id.
CLASS_TABLE: tuple[tuple[int, str, str, str], ...] = (
    (0, "Animalia", "Annelida", "Clitellata"),
    (1, "Animalia", "Annelida", "Polychaeta"),
    (4, "Animalia", "Arthropoda", "Arachnida"),
    (157, "Animalia", "Arthropoda", "Chilopoda"),
    (162, "Animalia", "Arthropoda", "Diplopoda"),
    (168, "Animalia", "Arthropoda", "Hexanauplia"),
    (175, "Animalia", "Arthropoda", "Insecta"),
    (2701, "Animalia", "Arthropoda", "Malacostraca"),
    (2755, "Animalia", "Arthropoda", "Merostomata"),
    (2756, "Animalia", "Chordata", "Actinopterygii"),
    (2939, "Animalia", "Chordata", "Amphibia"),
    (3109, "Animalia", "Chordata", "Ascidiacea"),
    (3111, "Animalia", "Chordata", "Aves"),
    (4597, "Animalia", "Chordata", "Elasmobranchii"),
    (4613, "Animalia", "Chordata", "Mammalia"),
    (4859, "Animalia", "Chordata", "Reptilia"),
    (5172, "Animalia", "Cnidaria", "Anthozoa"),
    (5189, "Animalia", "Cnidaria", "Hydrozoa"),
    (5192, "Animalia", "Cnidaria", "Scyphozoa"),
    (5198, "Animalia", "Echinodermata", "Asteroidea"),
    (5209, "Animalia", "Echinodermata", "Echinoidea"),
    (5216, "Animalia", "Echinodermata", "Holothuroidea"),
    (5218, "Animalia", "Echinodermata", "Ophiuroidea"),
    (5219, "Animalia", "Mollusca", "Bivalvia"),
    (5252, "Animalia", "Mollusca", "Cephalopoda"),
    (5257, "Animalia", "Mollusca", "Gastropoda"),
    (5379, "Animalia", "Mollusca", "Polyplacophora"),
    (5388, "Fungi", "Ascomycota", "Arthoniomycetes"),
    (5390, "Fungi", "Ascomycota", "Dothideomycetes"),
    (5391, "Fungi", "Ascomycota", "Lecanoromycetes"),
    (5446, "Fungi", "Ascomycota", "Leotiomycetes"),
    (5452, "Fungi", "Ascomycota", "Pezizomycetes"),
    (5465, "Fungi", "Ascomycota", "Sordariomycetes"),
    (5472, "Fungi", "Basidiomycota", "Agaricomycetes"),
    (5717, "Fungi", "Basidiomycota", "Dacrymycetes"),
    (5722, "Fungi", "Basidiomycota", "Pucciniomycetes"),
    (5725, "Fungi", "Basidiomycota", "Tremellomycetes"),
    (5729, "Plantae", "Bryophyta", "Bryopsida"),
    (5759, "Plantae", "Bryophyta", "Polytrichopsida"),
    (5763, "Plantae", "Bryophyta", "Sphagnopsida"),
    (5764, "Plantae", "Chlorophyta", "Ulvophyceae"),
    (5768, "Plantae", "Marchantiophyta", "Jungermanniopsida"),
    (5770, "Plantae", "Marchantiophyta", "Marchantiopsida"),
    (5775, "Plantae", "Rhodophyta", "Florideophyceae"),
    (5782, "Plantae", "Tracheophyta", "Cycadopsida"),
    (5783, "Plantae", "Tracheophyta", "Gnetopsida"),
    (5785, "Plantae", "Tracheophyta", "Liliopsida"),
    (6459, "Plantae", "Tracheophyta", "Lycopodiopsida"),
    (6479, "Plantae", "Tracheophyta", "Magnoliopsida"),
    (9774, "Plantae", "Tracheophyta", "Pinopsida"),
    (9860, "Plantae", "Tracheophyta", "Polypodiopsida"),
)

# The official supercategory of a class ("Animalia" where none of these applies).
SUPERCATEGORY_OF_CLASS: dict[str, str] = {
    "Insecta": "Insects",
    "Aves": "Birds",
    "Reptilia": "Reptiles",
    "Mammalia": "Mammals",
    "Actinopterygii": "Ray-finned Fishes",
    "Amphibia": "Amphibians",
    "Arachnida": "Arachnids",
}
SUPERCATEGORY_OF_KINGDOM: dict[str, str] = {"Plantae": "Plants", "Fungi": "Fungi"}
SUPERCATEGORY_OF_PHYLUM: dict[str, str] = {"Mollusca": "Mollusks"}

# Real orders: "Class: Name FirstGenus, ..." in id order; the first entry starts at the class's first id and
# each order runs to the next entry. "-" asks for a synthesised name (the real one is unknown).
ORDER_PINS = """
Clitellata: Haplotaxida Lumbricus
Polychaeta: Sabellida Sabella
Arachnida: Araneae Eratigena, - Aceria, Ixodida Amblyomma, Opiliones Mitopus, Scorpiones Centruroides
Chilopoda: Scolopendromorpha Hemiscolopendra, Scutigeromorpha Scutigera
Diplopoda: Julida Ommatoiulus, Polydesmida Oxidus, Spirobolida Anadenobolus
Hexanauplia: Lepadiformes Lepas, Scalpelliformes Pollicipes, Sessilia Balanus
Insecta: Blattodea Aptera, Coleoptera Arrhenodes, Dermaptera Euborellia, Diptera Dioctria,
 Ephemeroptera Hexagenia, Hemiptera Acanalonia, Hymenoptera Andrena, Lepidoptera Adela, Mantodea Ameles,
 Mecoptera Panorpa, Megaloptera Chauliodes, Neuroptera Chrysopa, Odonata Adversaeschna, Orthoptera Abracris,
 Phasmida Diapheromera, Psocodea Cerastipsocus, Zygentoma Ctenolepisma
Malacostraca: Decapoda Pacifastacus, Isopoda Armadillidium
Merostomata: Xiphosurida Limulus
Actinopterygii: Amiiformes Amia, Anguilliformes Anguilla, Aulopiformes Latropiscis, Clupeiformes Dorosoma,
 Cypriniformes Catostomus, Cyprinodontiformes Cyprinodon, Elopiformes Megalops, Esociformes Esox,
 Gasterosteiformes Culaea, Gobiesociformes Gobiesox, Lepisosteiformes Lepisosteus, Mugiliformes Mugil,
 Perciformes Acanthurus, Salmoniformes Oncorhynchus, Scorpaeniformes Oligocottus, Siluriformes Ariopsis,
 Syngnathiformes Aulostomus, Tetraodontiformes Anoplocapros
Amphibia: Anura Ascaphus, Caudata Ambystoma
Ascidiacea: Stolidobranchia Botrylloides
Aves: Accipitriformes Accipiter, Anseriformes Aix, Bucerotiformes Anthracoceros, Caprimulgiformes Aeronautes,
 Casuariiformes Dromaius, Cathartiformes Cathartes, Charadriiformes Alca, Ciconiiformes Anastomus,
 Coliiformes Colius, Columbiformes Chalcophaps, Coraciiformes Alcedo, Cuculiformes Cacomantis,
 Falconiformes Caracara, Galbuliformes Galbula, Galliformes Crax, Gaviiformes Gavia, Gruiformes Aramus,
 Musophagiformes Corythaixoides, Opisthocomiformes Opisthocomus, Otidiformes Ardeotis,
 Passeriformes Acanthisitta, Pelecaniformes Ardea, Phoenicopteriformes Phoeniconaias, Piciformes Lybius,
 Podicipediformes Aechmophorus, Procellariiformes Phoebastria, Psittaciformes Cacatua,
 Sphenisciformes Eudyptula, Strigiformes Aegolius, Struthioniformes Struthio, Suliformes Anhinga,
 Trogoniformes Pharomachrus
Elasmobranchii: Carcharhiniformes Triaenodon, Heterodontiformes Heterodontus, Lamniformes Carcharias,
 Myliobatiformes Aetobatus, Orectolobiformes Ginglymostoma, Rhinopristiformes Trygonorrhina
Mammalia: Artiodactyla Antilocapra, Carnivora Canis, Chiroptera Rhynchonycteris, Cingulata Dasypus,
 Dermoptera Galeopterus, Didelphimorphia Didelphis, Diprotodontia Macropus, Eulipotyphla Erinaceus,
 Hyracoidea Procavia, Lagomorpha Lepus, Monotremata Ornithorhynchus, Perissodactyla Equus, Pilosa Bradypus,
 Primates Alouatta, Proboscidea Elephas, Rodentia Castor, Sirenia Trichechus
Reptilia: Crocodylia Alligator, Rhynchocephalia Sphenodon, Squamata Acanthocercus, Testudines Phrynops
Anthozoa: Actiniaria Actinia, Corallimorpharia Corynactis
Hydrozoa: Anthoathecata Porpita, Siphonophorae Physalia
Scyphozoa: Rhizostomeae Stomolophus, Semaeostomeae Cyanea
Asteroidea: Forcipulatida Asterias, Spinulosida Henricia, Valvatida Patiria
Echinoidea: Camarodonta Echinometra, Clypeasteroida Dendraster
Holothuroidea: Dendrochirotida Cucumaria, Synallactida Apostichopus
Ophiuroidea: Amphilepidida Ophiothrix
Bivalvia: Adapedonta Ensis, Cardiida Clinocardium, Myida Dreissena, Mytilida Geukensia, Ostreida Crassostrea,
 Pectinida Anomia, Unionida Elliptio, Venerida Corbicula
Cephalopoda: Octopoda Octopus, Sepiida Sepia, Spirulida Spirula
Gastropoda: Aplysiida Aplysia, Architaenioglossa Pomacea, Cephalaspidea Navanax, Cycloneritida Helicina,
 Lepetellida Diodora, Littorinimorpha Crepidula, Neogastropoda Buccinum, Nudibranchia Aeolidia,
 Stylommatophora Lissachatina, Systellommatophora Belocaulus, Trochida Calliostoma
Polyplacophora: Chitonida Cryptochiton
Arthoniomycetes: Arthoniales Herpothallon
Dothideomycetes: Venturiales Apiosporina
Lecanoromycetes: Acarosporales Acarospora, Caliciales Physcia, Candelariales Candelaria, Lecanorales Cladonia,
 Lecideales Porpidia, Ostropales Graphis, Peltigerales Lobaria, Pertusariales Dibaeis, Rhizocarpales Rhizocarpon,
 Teloschistales Rusavskia, Umbilicariales Lasallia
Leotiomycetes: Helotiales Chlorociboria, Leotiales Leotia, Phacidiales Bulgaria, Rhytismatales Rhytisma
Pezizomycetes: Pezizales Caloscypha
Sordariomycetes: Hypocreales Hypomyces, Xylariales Annulohypoxylon
Agaricomycetes: Agaricales Agaricus, Auriculariales Auricularia, Boletales Astraeus, Cantharellales Cantharellus,
 Geastrales Geastrum, Gloeophyllales Gloeophyllum, Gomphales Ramaria, Hymenochaetales Fuscoporia,
 Phallales Aseroe, Polyporales Daedalea, Russulales Artomyces, Sebacinales Sebacina, Thelephorales Hydnellum
Dacrymycetes: Dacrymycetales Calocera
Pucciniomycetes: Pucciniales Allodus
Tremellomycetes: Tremellales Naematelia
Bryopsida: Bryales Bryum, Dicranales Dicranum, Funariales Funaria, Grimmiales Grimmia, Hedwigiales Hedwigia,
 Hypnales Anomodon, Pottiales Syntrichia
Polytrichopsida: Polytrichales Dawsonia
Sphagnopsida: Sphagnales Sphagnum
Ulvophyceae: Bryopsidales Codium, Cladophorales Cladophora, Ulvales Ulva
Jungermanniopsida: Jungermanniales Bazzania, Porellales Radula
Marchantiopsida: Lunulariales Lunularia, Marchantiales Conocephalum
Florideophyceae: Ceramiales Neorhodomela, Corallinales Corallina, Gigartinales Endocladia, Palmariales Halosaccion
Cycadopsida: Cycadales Zamia
Gnetopsida: Ephedrales Ephedra
Liliopsida: Acorales Acorus, Alismatales Alisma, Arecales Chamaerops, Asparagales Agapanthus,
 Commelinales Commelina, Dioscoreales Dioscorea, Liliales Burchardia, Pandanales Freycinetia, Poales Bromelia,
 Zingiberales Canna
Lycopodiopsida: Lycopodiales Dendrolycopodium, Selaginellales Selaginella
Magnoliopsida: Apiales Aegopodium, Aquifoliales Ilex, Asterales Alseuosmia, Boraginales Adelinia,
 Brassicales Batis, Bruniales Brunia, Buxales Pachysandra, Canellales Pseudowintera, Caryophyllales Carpobrotus,
 Celastrales Canotia, Ceratophyllales Ceratophyllum, Cornales Cornus, Crossosomatales Staphylea,
 Cucurbitales Coriaria, Dipsacales Centranthus, Ericales Impatiens, Fabales Abrus, Fagales Alnus,
 Garryales Garrya, Gentianales Amsonia, Geraniales Erodium, Gunnerales Gunnera, Lamiales Acanthus,
 Laurales Laurelia, Magnoliales Annona, Malpighiales Chrysobalanus, Malvales Bixa, Myrtales Conocarpus,
 Nymphaeales Brasenia, Oxalidales Bauera, Piperales Aristolochia, Proteales Nelumbo, Ranunculales Achlys,
 Rosales Cannabis, Santalales Ileostylus, Sapindales Anacardium, Saxifragales Liquidambar, Solanales Calystegia,
 Vitales Ampelopsis, Zygophyllales Krameria
Pinopsida: Pinales Agathis
Polypodiopsida: Cyatheales Cyathea, Equisetales Equisetum, Gleicheniales Dicranopteris,
 Hymenophyllales Hymenophyllum, Ophioglossales Botrychium, Osmundales Leptopteris, Polypodiales Asplenium,
 Psilotales Psilotum, Salviniales Azolla, Schizaeales Lygodium
"""

# Real families with their real extents: "Class: Name FirstGenus[-LastGenus], ..." (other families are
# synthesised; every pinned family lies inside one pinned order).
FAMILY_PINS = """
Clitellata: Lumbricidae Lumbricus
Polychaeta: Sabellidae Sabella, Serpulidae Serpula-Spirobranchus
Arachnida: Agelenidae Eratigena, Antrodiaetidae Atypoides, Araneidae Aculepeira-Zygiella, Salticidae Anasaitis-Trite
Chilopoda: Scolopendridae Hemiscolopendra-Scolopendra, Scutigeridae Scutigera
Diplopoda: Julidae Ommatoiulus, Paradoxosomatidae Oxidus, Xystodesmidae Apheloria-Harpaphe,
 Rhinocricidae Anadenobolus, Trigoniulidae Trigoniulus
Hexanauplia: Lepadidae Lepas, Pollicipedidae Pollicipes, Balanidae Balanus-Semibalanus, Tetraclitidae Tetraclita
Insecta: Blaberidae Aptera-Pycnoscelus, Blattidae Blatta-Periplaneta, Ectobiidae Pseudomops, Brentidae Arrhenodes,
 Buprestidae Agrilus-Euchroma, Cantharidae Atalantycha-Rhagonycha, Cerambycidae Agapanthia-Xylotrechus,
 Chrysomelidae Acalymma-Zygogramma, Coccinellidae Adalia-Psyllobora, Curculionidae Cactophagus-Rhynchophorus,
 Scarabaeidae Amphimallon-Valgus, Syrphidae Allograpta-Volucella, Cicadellidae Cicadella-Tylozygus,
 Cicadidae Amphipsalta-Psaltoda, Coreidae Acanthocephala-Thasus, Pentatomidae Aelia-Thyanta,
 Reduviidae Apiomerus-Zelus, Formicidae Anoplolepis-Veromessor, Vespidae Ancistrocerus-Vespula,
 Crambidae Achyra-Urola, Erebidae Achaea-Zanclognatha, Geometridae Abraxas-Xanthorhoe,
 Hesperiidae Achalarus-Wallengrenia, Lasiocampidae Artace-Trabala, Limacodidae Acharia-Tortricidia,
 Lycaenidae Acytolepis-Zizula, Noctuidae Achatia-Xestia, Notodontidae Clostera-Thaumetopoea,
 Nymphalidae Acraea-Ypthima, Papilionidae Battus-Zerynthia, Pieridae Abaeis-Zerene, Pyralidae Aglossa-Tosale,
 Riodinidae Abisara-Zemeros, Saturniidae Actias-Saturnia, Sphingidae Acherontia-Xylophanes,
 Tortricidae Acleris-Syricoris, Aeshnidae Adversaeschna-Rhionaeschna, Coenagrionidae Agriocnemis-Xanthocnemis,
 Gomphidae Aphylla-Stylurus, Libellulidae Acisoma-Urothemis, Acrididae Abracris-Xenocatantops,
 Gryllidae Gryllodes-Velarifictorus, Tettigoniidae Anabrus-Tettigonia, Trigonidiidae Phyllopalpus,
 Diapheromeridae Diapheromera-Megaphasma, Phasmatidae Clitarchus, Pseudophasmatidae Anisomorpha,
 Psocidae Cerastipsocus, Lepismatidae Ctenolepisma-Lepisma
Malacostraca: Astacidae Pacifastacus, Cambaridae Faxonius-Procambarus, Cancridae Cancer-Romaleon,
 Carcinidae Carcinus, Coenobitidae Coenobita, Epialtidae Pugettia, Gecarcinidae Cardisoma, Geryonidae Ovalipes,
 Grapsidae Grapsus-Pachygrapsus, Hippidae Emerita, Nephropidae Homarus, Ligiidae Ligia, Oniscidae Oniscus,
 Philosciidae Philoscia, Porcellionidae Porcellio, Trachelipodidae Trachelipus
Merostomata: Limulidae Limulus
Actinopterygii: Amiidae Amia, Anguillidae Anguilla, Muraenidae Gymnothorax, Aulopidae Latropiscis,
 Clupeidae Dorosoma, Catostomidae Catostomus, Cyprinidae Campostoma-Squalius, Cyprinodontidae Cyprinodon,
 Fundulidae Fundulus, Poeciliidae Gambusia, Megalopidae Megalops, Esocidae Esox,
 Gasterosteidae Culaea-Gasterosteus, Gobiesocidae Gobiesox, Labridae Achoerodus-Thalassoma,
 Pomacanthidae Pomacanthus, Pomacentridae Abudefduf-Parma, Pomatomidae Pomatomus, Scaridae Scarus-Sparisoma,
 Sciaenidae Aplodinotus-Sciaenops, Serranidae Hypoplectrodes-Serranus, Sparidae Acanthopagrus-Sarpa,
 Sphyraenidae Sphyraena, Tripterygiidae Enneapterygius-Forsterygion, Zanclidae Zanclus,
 Salmonidae Oncorhynchus-Salvelinus, Ictaluridae Ameiurus-Ictalurus
Amphibia: Bufonidae Anaxyrus-Sclerophrys, Hylidae Acris-Trachycephalus, Plethodontidae Aneides-Pseudotriton,
 Salamandridae Ichthyosaura-Triturus
Ascidiacea: Styelidae Botrylloides-Botryllus
Aves: Accipitridae Accipiter-Terathopius, Anatidae Aix-Tadorna, Trochilidae Amazilia-Thalurania,
 Laridae Chlidonias-Thalasseus, Scolopacidae Actitis-Xenus, Columbidae Chalcophaps-Zenaida,
 Alcedinidae Alcedo-Todiramphus, Cuculidae Cacomantis-Piaya, Phasianidae Alectoris-Tetrastes,
 Rallidae Amaurornis-Zapornia, Acrocephalidae Acrocephalus-Iduna, Aegithalidae Aegithalos-Psaltriparus,
 Corvidae Aphelocoma-Urocissa, Fringillidae Acanthis-Spinus, Hirundinidae Cecropis-Tachycineta,
 Icteridae Agelaioides-Xanthocephalus, Meliphagidae Acanthorhynchus-Ptilotula, Muscicapidae Copsychus-Tarsiger,
 Parulidae Basileuterus-Vermivora, Passerellidae Aimophila-Zonotrichia, Thraupidae Chlorophanes-Volatinia,
 Tyrannidae Camptostoma-Tyrannus, Ardeidae Ardea-Tigrisoma, Threskiornithidae Bostrychia-Threskiornis,
 Picidae Campephilus-Sphyrapicus, Psittacidae Amazona-Psittacara, Psittaculidae Agapornis-Trichoglossus,
 Strigidae Aegolius-Surnia
Mammalia: Bovidae Aepyceros-Tragelaphus, Camelidae Lama-Vicugna, Cervidae Alces-Rusa, Delphinidae Delphinus-Tursiops,
 Canidae Canis-Vulpes, Felidae Acinonyx-Puma, Mustelidae Enhydra-Taxidea, Sciuridae Ammospermophilus-Xerospermophilus,
 Trichechidae Trichechus
Reptilia: Alligatoridae Alligator-Caiman, Crocodylidae Crocodylus, Sphenodontidae Sphenodon,
 Agamidae Acanthocercus-Stellagama, Anguidae Anguis-Ophisaurus, Boidae Boa-Lichanura,
 Chamaeleonidae Bradypodion-Chamaeleo, Colubridae Ahaetulla-Zamenis, Helodermatidae Heloderma,
 Iguanidae Amblyrhynchus-Sauromalus, Viperidae Agkistrodon-Vipera, Chelidae Phrynops, Cheloniidae Caretta-Lepidochelys,
 Chelydridae Chelydra, Emydidae Actinemys-Trachemys, Kinosternidae Kinosternon-Sternotherus,
 Testudinidae Chersina-Testudo, Trionychidae Apalone
Anthozoa: Actiniidae Actinia-Urticina
Echinoidea: Dendrasteridae Dendraster, Mellitidae Mellita
Holothuroidea: Cucumariidae Cucumaria, Stichopodidae Apostichopus
Ophiuroidea: Ophiotrichidae Ophiothrix
Bivalvia: Pharidae Ensis, Cardiidae Clinocardium-Tridacna, Donacidae Donax, Dreissenidae Dreissena, Myidae Mya,
 Pholadidae Cyrtopleura, Mytilidae Geukensia-Xenostrobus, Ostreidae Crassostrea-Ostrea, Anomiidae Anomia-Pododesmus,
 Pectinidae Argopecten-Crassadoma, Unionidae Elliptio-Pyganodon, Cyrenidae Corbicula, Mactridae Spisula,
 Veneridae Austrovenus-Tivela
Cephalopoda: Octopodidae Octopus
Gastropoda: Helicidae Arianta-Theba
Arthoniomycetes: Arthoniaceae Herpothallon, Chrysothricaceae Chrysothrix
Dothideomycetes: Venturiaceae Apiosporina
Lecanoromycetes: Acarosporaceae Acarospora, Physciaceae Physcia, Candelariaceae Candelaria, Cladoniaceae Cladonia,
 Lecanoraceae Protoparmeliopsis, Parmeliaceae Evernia-Vulpicida, Ramalinaceae Ramalina, Lecideaceae Porpidia,
 Lobariaceae Lobaria-Ricasolia, Peltigeraceae Peltigera, Icmadophilaceae Dibaeis-Icmadophila,
 Rhizocarpaceae Rhizocarpon, Teloschistaceae Rusavskia-Xanthoria, Umbilicariaceae Lasallia-Umbilicaria
Leotiomycetes: Chlorociboriaceae Chlorociboria, Gelatinodiscaceae Ascocoryne, Pezizellaceae Calycina,
 Leotiaceae Leotia, Phacidiaceae Bulgaria, Rhytismataceae Rhytisma
Pezizomycetes: Caloscyphaceae Caloscypha, Discinaceae Gyromitra, Helvellaceae Helvella, Morchellaceae Morchella-Verpa,
 Pyronemataceae Aleuria, Sarcoscyphaceae Sarcoscypha, Sarcosomataceae Galiella-Urnula
Sordariomycetes: Hypocreaceae Hypomyces, Nectriaceae Nectria, Hypoxylaceae Annulohypoxylon,
 Xylariaceae Kretzschmaria-Xylaria
Agaricomycetes: Boletaceae Boletus-Xerocomus, Polyporaceae Cerioporus-Trametes
Bryopsida: Hedwigiaceae Hedwigia, Anomodontaceae Anomodon, Brachytheciaceae Kindbergia,
 Hylocomiaceae Hylocomium-Rhytidiadelphus, Hypnaceae Hypnum, Lembophyllaceae Isothecium, Leucodontaceae Dendroalsia,
 Neckeraceae Neckera, Plagiotheciaceae Plagiothecium, Pylaisiaceae Ptilium, Thuidiaceae Thuidium,
 Pottiaceae Syntrichia-Tortula
Polytrichopsida: Polytrichaceae Dawsonia-Polytrichum
Sphagnopsida: Sphagnaceae Sphagnum
Ulvophyceae: Codiaceae Codium, Cladophoraceae Cladophora, Ulvaceae Ulva
Jungermanniopsida: Lepidoziaceae Bazzania, Radulaceae Radula
Marchantiopsida: Lunulariaceae Lunularia, Conocephalaceae Conocephalum, Marchantiaceae Marchantia,
 Rebouliaceae Asterella
Florideophyceae: Rhodomelaceae Neorhodomela, Corallinaceae Corallina, Endocladiaceae Endocladia,
 Gigartinaceae Chondracanthus-Chondrus, Phyllophoraceae Mastocarpus
Cycadopsida: Zamiaceae Zamia
Gnetopsida: Ephedraceae Ephedra
Liliopsida: Acoraceae Acorus, Araceae Alocasia-Zantedeschia, Butomaceae Butomus, Hydrocharitaceae Elodea-Stratiotes,
 Juncaginaceae Triglochin, Potamogetonaceae Potamogeton, Scheuchzeriaceae Scheuchzeria, Tofieldiaceae Triantha,
 Zosteraceae Phyllospadix-Zostera, Arecaceae Chamaerops-Washingtonia, Amaryllidaceae Agapanthus-Zephyranthes,
 Asparagaceae Agave-Yucca, Iridaceae Alophia-Tigridia, Orchidaceae Acianthus-Tipularia, Liliaceae Calochortus-Tulipa,
 Cyperaceae Bolboschoenus-Trichophorum, Poaceae Achnatherum-Uniola
Lycopodiopsida: Lycopodiaceae Dendrolycopodium-Spinulum, Selaginellaceae Selaginella
Magnoliopsida: Apiaceae Aegopodium-Zizia, Araliaceae Aralia-Schefflera, Asteraceae Achillea-Zinnia,
 Campanulaceae Campanula-Wahlenbergia, Boraginaceae Adelinia-Wigandia, Brassicaceae Alliaria-Turritis,
 Amaranthaceae Achyranthes-Salsola, Cactaceae Acanthocereus-Stenocereus, Caryophyllaceae Achyronychia-Viscaria,
 Polygonaceae Antigonon-Rumex, Cucurbitaceae Brandegea-Sicyos, Caprifoliaceae Centranthus-Valerianella,
 Ericaceae Allotropa-Xylococcus, Polemoniaceae Aliciella-Polemonium, Primulaceae Androsace-Soldanella,
 Fabaceae Abrus-Wisteria, Apocynaceae Amsonia-Vincetoxicum, Gentianaceae Blackstonia-Zeltnera,
 Rubiaceae Bouvardia-Stenaria, Acanthaceae Acanthus-Thunbergia, Bignoniaceae Bignonia-Tecomaria,
 Lamiaceae Agastache-Warnockia, Orobanchaceae Agalinis-Triphysaria, Plantaginaceae Antirrhinum-Veronicastrum,
 Lauraceae Beilschmiedia-Umbellularia, Euphorbiaceae Acalypha-Triadica, Malvaceae Abutilon-Waltheria,
 Onagraceae Camissoniopsis-Taraxia, Proteaceae Banksia-Serruria, Papaveraceae Argemone-Stylophorum,
 Ranunculaceae Aconitum-Xanthorhiza, Rhamnaceae Berchemia-Ziziphus, Rosaceae Acaena-Waldsteinia,
 Anacardiaceae Anacardium-Toxicodendron, Sapindaceae Acer-Ungnadia, Crassulaceae Cotyledon-Umbilicus,
 Saxifragaceae Chrysosplenium-Whipplea, Convolvulaceae Calystegia-Jacquemontia, Solanaceae Alkekengi-Solanum
Pinopsida: Araucariaceae Agathis, Cupressaceae Calocedrus-Thuja, Pinaceae Abies-Tsuga,
 Podocarpaceae Dacrycarpus-Prumnopitys, Taxaceae Taxus-Torreya
Polypodiopsida: Equisetaceae Equisetum, Pteridaceae Acrostichum-Pteris, Psilotaceae Psilotum-Tmesipteris,
 Salviniaceae Azolla-Salvinia, Lygodiaceae Lygodium
"""

FIRST40_COMMON_NAMES: tuple[str, ...] = (
    "Common Earthworm", "Mediterranean Fanworm", "Serpula columbiana", "Blue Tube Worm", "Giant House Spider",
    "California Turret Spider", "Oak Spider", "Gorse Orbweaver", "Giant Lichen Orbweaver", "Cross Orbweaver",
    "Marbled Orb Weaver", "Four-spot Orbweaver", "Shamrock Orbweaver", "Six-spotted Orbweaver",
    "Hawaiian Garden Spider", "Silver Garden Spider", "Yellow Garden Spider", "Common Garden Orbweb Spinner",
    "Wasp Spider", "St. Andrew's Cross Spider", "Lobed Argiope", "Banded Garden Spider", "Australian Jewel Spider",
    "Conical Orbweaver", "Humped Trashline Orbweaver", "Tropical Tent-web Spider", "Garden Orbweb Spider",
    "Tropical Orbweaver Spider", "Spinybacked Orbweaver", "Black-and-white Spiny Spider", "Furrow Orbweaver",
    "Cricket-bat Orbweaver", "Tuft-legged Orbweaver", "Basilica Spider", "Spined Micrathena", "White Micrathena",
    "Arrow-shaped Micrathena", "Arabesque Orbweaver", "Hentz's Orbweaver", "Red-femured Spotted Orbweaver",
)  # fmt: skip

ANCHOR_COMMON_NAMES: dict[int, str] = {
    2912: "Brown Bullhead Catfish",
    3583: "Black-billed Cuckoo",
    3689: "Bushtit",
    3938: "White-plumed Honeyeater",
    4831: "Yellow-bellied Marmot",
    5015: "Desert Iguana",
    9999: "Japanese climbing fern",
}

# Synthetic common names: "<adjective from the epithet> <noun of the class>"; other species keep the
# scientific name as common_name (as real category 2 does).
EPITHET_ADJECTIVES: dict[str, str] = {
    "alb": "White", "nigr": "Black", "niger": "Black", "rubr": "Red", "rub": "Red", "flav": "Yellow",
    "lute": "Yellow", "viridi": "Green", "virid": "Green", "caerule": "Blue", "cyane": "Blue", "aure": "Golden",
    "argent": "Silver", "grise": "Grey", "fusc": "Dusky", "brunne": "Brown", "vulgar": "Common",
    "commun": "Common", "american": "American", "canadens": "Canadian", "californic": "California",
    "virgini": "Virginia", "mexican": "Mexican", "europae": "European", "japonic": "Japanese",
    "chinens": "Chinese", "australi": "Southern", "boreal": "Northern", "occidental": "Western",
    "oriental": "Eastern", "maxim": "Great", "major": "Greater", "minor": "Lesser", "minim": "Least",
    "gigante": "Giant", "grand": "Large", "parv": "Little", "pusill": "Tiny", "elegan": "Elegant",
    "formos": "Beautiful", "pulchr": "Pretty", "speci": "Showy", "spinos": "Spiny", "hirsut": "Hairy",
    "villos": "Shaggy", "glabr": "Smooth", "maculat": "Spotted", "punctat": "Dotted", "striat": "Striped",
    "fasciat": "Banded", "lineat": "Lined", "marginat": "Margined", "ocellat": "Eyed", "palustr": "Marsh",
    "aquatic": "Water", "marin": "Sea", "maritim": "Coastal", "montan": "Mountain", "alpin": "Alpine",
    "sylvatic": "Woodland", "silvestr": "Forest", "campestr": "Field", "arvens": "Field", "pratens": "Meadow",
    "rupestr": "Rock", "arenari": "Sand", "desert": "Desert", "odorat": "Fragrant", "edul": "Edible",
    "officinal": "Apothecary's", "tricolor": "Three-colored", "bicolor": "Two-colored", "vari": "Variable",
    "versicolor": "Variegated", "sanguine": "Blood-red", "coccine": "Scarlet", "purpure": "Purple",
    "rose": "Rosy", "ignit": "Fiery", "nobil": "Noble", "regal": "Royal", "gracil": "Slender",
    "robust": "Robust", "tenu": "Thin", "crass": "Stout", "long": "Long", "brev": "Short",
    "latifoli": "Broad-leaved", "angustifoli": "Narrow-leaved", "serrat": "Toothed", "repen": "Creeping",
    "scandens": "Climbing", "erect": "Upright", "nan": "Dwarf", "annu": "Annual", "peren": "Perennial",
    "septentrional": "Northern", "meridional": "Southern", "austral": "Austral", "texan": "Texas",
    "florid": "Florida", "carolin": "Carolina", "hispanic": "Spanish", "italic": "Italian", "indic": "Indian",
    "african": "African", "afr": "African", "asiatic": "Asian", "sinens": "Chinese", "zealand": "New Zealand",
}  # fmt: skip

CLASS_NOUNS: dict[str, tuple[str, ...]] = {
    "Insecta": ("Beetle", "Moth", "Fly", "Bee", "Wasp", "Bug", "Butterfly", "Dragonfly", "Grasshopper", "Ant"),
    "Arachnida": ("Spider", "Orbweaver", "Jumping Spider", "Mite", "Tick", "Harvestman", "Scorpion"),
    "Aves": ("Warbler", "Sparrow", "Hawk", "Finch", "Dove", "Owl", "Heron", "Flycatcher", "Wren", "Tanager"),
    "Mammalia": ("Bat", "Shrew", "Mouse", "Squirrel", "Deer", "Fox", "Rabbit", "Vole"),
    "Reptilia": ("Lizard", "Snake", "Skink", "Gecko", "Turtle", "Anole"),
    "Amphibia": ("Frog", "Toad", "Treefrog", "Salamander", "Newt"),
    "Actinopterygii": ("Fish", "Minnow", "Wrasse", "Goby", "Sunfish", "Darter"),
    "Gastropoda": ("Snail", "Slug", "Sea Slug", "Whelk", "Limpet"),
    "Bivalvia": ("Clam", "Mussel", "Scallop", "Oyster"),
    "Magnoliopsida": ("Aster", "Clover", "Mallow", "Mint", "Buttercup", "Bellflower", "Willow", "Oak", "Sage"),
    "Liliopsida": ("Sedge", "Grass", "Lily", "Orchid", "Rush", "Onion"),
    "Polypodiopsida": ("Fern", "Spleenwort", "Shield Fern", "Horsetail"),
    "Pinopsida": ("Pine", "Fir", "Juniper", "Spruce"),
    "Agaricomycetes": ("Mushroom", "Bolete", "Polypore", "Brittlegill", "Webcap", "Puffball"),
    "Lecanoromycetes": ("Lichen", "Shield Lichen", "Pixie Cup"),
    "Bryopsida": ("Moss", "Feather Moss"),
}  # fmt: skip
DEFAULT_NOUNS: dict[str, tuple[str, ...]] = {
    "Animalia": ("Worm", "Crab", "Sea Star", "Anemone", "Millipede"),
    "Fungi": ("Fungus", "Cup", "Jelly"),
    "Plantae": ("Plant", "Liverwort", "Seaweed"),
}
